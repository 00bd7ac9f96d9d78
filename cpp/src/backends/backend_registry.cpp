// Placeholder until the backend registry lands.
#include "backends/gnn_backend.h"

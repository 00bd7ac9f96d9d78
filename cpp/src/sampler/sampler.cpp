// Placeholder until the sampler lands.
#include "sampler/neighbourhood.h"

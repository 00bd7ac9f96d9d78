// The GNN latency floor through libtorch alone: no Python, no plugin, no libfraud. Built by
// gnn_latency.py at bench time against the venv's torch.
//   gnn_plain_libtorch {torchscript|aoti} MODEL INPUTS.bin FANOUT CALLS WARMUP OUT.bin
// INPUTS.bin: the seven float32 arrays of one target (neighbourhood.h order), concatenated.
// OUT.bin: int64 nanoseconds of each timed call; stdout: the logit of the last call.
#include <ATen/Parallel.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/script.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <vector>

int main(int argc, char** argv) {
    if (argc != 8) {
        std::fprintf(stderr, "usage: %s {torchscript|aoti} MODEL INPUTS.bin FANOUT CALLS WARMUP OUT.bin\n", argv[0]);
        return 2;
    }
    const std::string kind = argv[1];
    const int64_t K = std::atoll(argv[4]), calls = std::atoll(argv[5]), warmup = std::atoll(argv[6]);
    at::set_num_threads(1);  // as the plugin does
    c10::InferenceMode guard;

    const std::vector<std::vector<int64_t>> shapes = {
        {1, 5}, {1, 4, 5}, {1, 4}, {1, 4, K, 5}, {1, 4, K}, {1, 4, K, 4, 5}, {1, 4, K, 4}};
    std::ifstream in(argv[3], std::ios::binary);
    std::vector<std::vector<float>> data;
    std::vector<at::Tensor> inputs;
    for (const auto& s : shapes) {
        int64_t n = 1;
        for (int64_t d : s) n *= d;
        data.emplace_back(n);
        in.read(reinterpret_cast<char*>(data.back().data()), n * sizeof(float));
        inputs.push_back(torch::from_blob(data.back().data(), s, torch::kFloat32));
    }
    if (!in) {
        std::fprintf(stderr, "%s: too short\n", argv[3]);
        return 2;
    }

    std::function<at::Tensor()> call;
    torch::jit::Module module;
    std::unique_ptr<torch::inductor::AOTIModelPackageLoader> loader;
    std::vector<c10::IValue> args(inputs.begin(), inputs.end());
    if (kind == "torchscript") {
        module = torch::jit::load(argv[2]);
        module.eval();
        call = [&] { return module.forward(args).toTupleRef().elements()[0].toTensor(); };
    } else {
        loader = std::make_unique<torch::inductor::AOTIModelPackageLoader>(argv[2]);
        call = [&] { return loader->run(inputs)[0]; };
    }
    at::Tensor out;
    for (int64_t i = 0; i < warmup; ++i) out = call();
    std::vector<int64_t> ns(calls);
    for (int64_t i = 0; i < calls; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        out = call();
        const auto t1 = std::chrono::steady_clock::now();
        ns[i] = std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count();
    }
    std::ofstream(argv[7], std::ios::binary).write(reinterpret_cast<const char*>(ns.data()), ns.size() * sizeof(int64_t));
    std::printf("%.9g\n", out.reshape({-1})[0].item<float>());
    return 0;
}

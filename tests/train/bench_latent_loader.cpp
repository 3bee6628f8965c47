// Loader throughput: micro-batches per second over real prep shards (--shards DIR) or synthetic
// ones written to a temporary folder, with an optional simulated step time to show how much of the
// reading prefetch hides. Prints one JSON line.
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "core/error.hpp"
#include "shard_fixture.hpp"
#include "train/latent_loader.hpp"

using namespace mcm;
using Clock = std::chrono::steady_clock;

namespace {

const char* kUsage =
    "latent_loader_bench [--shards DIR] [--batches N] [--micro B] [--prefetch P] [--compute-ms X]\n"
    "latent_loader_bench --make DIR   (writes the synthetic shards to DIR and exits)\n"
    "  without --shards: 8 synthetic shards x 64 rows of latents [4, 16, 32, 32], text_emb [77, 1024]\n"
    "  in a temporary folder\n";

std::vector<std::filesystem::path> make_shards(const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  std::vector<std::filesystem::path> out;
  for (int s = 0; s < 8; ++s)
    out.push_back(test::write_shard(dir / cat("video-", s, ".h5"), {4, 16, 32, 32}, 77, 1024, 64, s * 64));
  return out;
}

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

}  // namespace

int main(int argc, char** argv) {
  std::string dir, scratch, make;
  int64_t batches = 64, micro = 4;
  int prefetch = 2;
  double compute_ms = 0;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&] {
      if (i + 1 >= argc) { std::cerr << kUsage; std::exit(2); }
      return std::string(argv[++i]);
    };
    if (a == "--shards") dir = value();
    else if (a == "--make") make = value();
    else if (a == "--batches") batches = std::stoll(value());
    else if (a == "--micro") micro = std::stoll(value());
    else if (a == "--prefetch") prefetch = std::stoi(value());
    else if (a == "--compute-ms") compute_ms = std::stod(value());
    else { std::cerr << kUsage; return a == "--help" ? 0 : 2; }
  }
  try {
    train::LoaderOptions o;
    if (!make.empty()) {
      make_shards(make);
      return 0;
    }
    if (dir.empty()) {
      auto tmp = std::filesystem::temp_directory_path() / cat("mcm-loader-bench-", ::getpid());
      o.shards = make_shards(tmp);
      dir = scratch = tmp.string();
    } else {
      for (auto& e : std::filesystem::directory_iterator(dir))
        if (e.path().extension() == ".h5") o.shards.push_back(e.path());
    }
    o.global_batch = o.micro_batch = micro;
    o.prefetch = prefetch;
    auto t0 = Clock::now();
    train::LatentLoader loader(o);
    const double open_s = seconds_since(t0);
    t0 = Clock::now();
    double wait_s = 0;
    int64_t bytes = 0;
    for (int64_t i = 0; i < batches; ++i) {
      auto w0 = Clock::now();
      auto b = loader.next();
      wait_s += seconds_since(w0);
      bytes += (b.latents.numel() + b.text_emb.numel()) * 2;  // float16 on disk
      if (compute_ms > 0) std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(compute_ms));
    }
    const double total_s = seconds_since(t0);
    nlohmann::json r{{"shards", dir},
                     {"files", o.shards.size()},
                     {"items", loader.items()},
                     {"micro_batch", micro},
                     {"prefetch", prefetch},
                     {"compute_ms", compute_ms},
                     {"open_s", open_s},
                     {"batches", batches},
                     {"samples_per_s", batches * micro / total_s},
                     {"read_mb_per_s", bytes / 1e6 / total_s},
                     {"wait_ms_per_batch", 1e3 * wait_s / batches}};
    std::cout << r.dump() << "\n";
    // Not std::filesystem::remove_all: see tests/test_util.hpp.
    if (!scratch.empty() && std::system(cat("rm -rf '", scratch, "'").c_str()) != 0) return 1;
  } catch (const std::exception& e) {
    std::cerr << "latent_loader_bench: " << e.what() << "\n";
    return 1;
  }
  return 0;
}

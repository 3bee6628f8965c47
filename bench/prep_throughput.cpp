// bench/prep_throughput: clips per second per core for prep's decode + crop + resize, side by
// side in one run with the ffmpeg CLI (decode, select, crop, scale to rawvideo) and a PyAV
// loader, all single-threaded. Prints a table and writes JSON.
//   prep_throughput --tar SHARD.tar [--frames 16 --stride 8 --size 256 --reps 5 --python PY --json OUT]
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "io/media_decode.hpp"
#include "io/webdataset.hpp"

using namespace mcm;
using Clock = std::chrono::steady_clock;

namespace {
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

int run(const std::string& cmd) {
  int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}
}  // namespace

int main(int argc, char** argv) {
  std::string tar, python = "python3", json_out = "bench/results/prep_throughput.json", script = "bench/pyav_loader.py";
  int frames = 16, stride = 8, size = 256, reps = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--tar") tar = v;
    else if (k == "--frames") frames = std::stoi(v);
    else if (k == "--stride") stride = std::stoi(v);
    else if (k == "--size") size = std::stoi(v);
    else if (k == "--reps") reps = std::stoi(v);
    else if (k == "--python") python = v;
    else if (k == "--json") json_out = v;
    else if (k == "--pyav-script") script = v;
    else { std::cerr << "unknown flag " << k << "\n"; return 2; }
  }
  if (tar.empty()) { std::cerr << "usage: prep_throughput --tar SHARD.tar [...]\n"; return 2; }

  // Clips long enough for the window, written to a scratch folder for the CLI tools.
  std::string dir = "/tmp/mcm-bench-clips";
  run("rm -rf " + dir + " && mkdir -p " + dir);
  std::vector<std::pair<std::string, std::vector<uint8_t>>> clips;
  io::WebDatasetReader r(tar);
  io::Sample s;
  const int span = (frames - 1) * stride + 1;
  while (r.next(s)) {
    if (!s.has("mp4")) continue;
    auto& b = s.files["mp4"];
    io::DecodeOptions o;
    o.frames = 1; o.width = o.height = 16; o.start = 0;
    auto probe = io::decode_clip(b.data(), b.size(), s.key, o);
    if (probe.source_frames < span) continue;
    std::string path = dir + "/" + s.key + ".mp4";
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
    clips.emplace_back(path, b);
  }
  if (clips.empty()) { std::cerr << "no clip in " << tar << " has " << span << " frames\n"; return 1; }
  const int n = static_cast<int>(clips.size()) * reps;

  // 1. ours: the exact call prep makes (1 decoder thread, center crop, bicubic).
  io::DecodeOptions o;
  o.frames = frames; o.stride = stride; o.width = o.height = size; o.start = 0; o.threads = 1;
  auto t0 = Clock::now();
  size_t bytes = 0;
  for (int k = 0; k < reps; ++k)
    for (auto& [path, b] : clips) bytes += io::decode_clip(b.data(), b.size(), path, o).rgb.size();
  double ours = since(t0);

  // 2. ffmpeg CLI: the same frames (select n < span, n % stride == 0), crop to square, scale.
  std::string filter = cat("select='lt(n\\,", span, ")*not(mod(n\\,", stride, "))',crop='min(iw,ih)':'min(iw,ih)',scale=",
                           size, ":", size, ":flags=bicubic");
  t0 = Clock::now();
  for (int k = 0; k < reps; ++k)
    for (auto& [path, b] : clips) {
      std::string cmd = cat("ffmpeg -nostdin -v error -threads 1 -filter_threads 1 -i ", path, " -vf \"", filter,
                            "\" -fps_mode passthrough -frames:v ", frames, " -f rawvideo -pix_fmt rgb24 - > /dev/null");
      if (run(cmd) != 0) { std::cerr << "ffmpeg failed: " << cmd << "\n"; return 1; }
    }
  double cli = since(t0);

  // 3. PyAV loader (times itself, excluding interpreter start-up).
  std::string out = dir + "/pyav.json";
  std::string cmd = cat(python, " ", script, " --dir ", dir, " --frames ", frames, " --stride ", stride, " --size ", size,
                        " --reps ", reps, " --out ", out);
  double pyav = -1;
  if (run(cmd) == 0) pyav = nlohmann::json::parse(std::ifstream(out))["seconds"].get<double>();

  auto rate = [&](double s) { return s > 0 ? n / s : 0.0; };
  std::printf("\nprep_throughput: %zu clips x %d reps, %d frames at stride %d -> %dx%d RGB, 1 thread each\n",
              clips.size(), reps, frames, stride, size, size);
  std::printf("%-22s %10s %14s %10s\n", "loader", "seconds", "clips/s/core", "vs ffmpeg");
  std::printf("%-22s %10.3f %14.2f %10.2f\n", "mcm (C++ FFmpeg API)", ours, rate(ours), cli / ours);
  std::printf("%-22s %10.3f %14.2f %10.2f\n", "ffmpeg CLI", cli, rate(cli), 1.0);
  if (pyav > 0) std::printf("%-22s %10.3f %14.2f %10.2f\n", "PyAV", pyav, rate(pyav), cli / pyav);
  nlohmann::json j{{"clips", clips.size()}, {"reps", reps}, {"frames", frames}, {"stride", stride}, {"size", size},
                   {"threads_per_loader", 1},
                   {"results", {{"mcm", {{"seconds", ours}, {"clips_per_s", rate(ours)}}},
                                {"ffmpeg_cli", {{"seconds", cli}, {"clips_per_s", rate(cli)}}},
                                {"pyav", {{"seconds", pyav}, {"clips_per_s", rate(pyav)}}}}},
                   {"mcm_vs_ffmpeg_cli", cli / ours},
                   {"mcm_vs_pyav", pyav > 0 ? pyav / ours : 0.0}};
  run("mkdir -p $(dirname " + json_out + ")");
  std::ofstream(json_out) << j.dump(2) << "\n";
  std::printf("wrote %s\n", json_out.c_str());
  return 0;
}

// bench/prep_throughput: prep's work per clip, measured fairly. Decode rows, per clip of realistic
// length (bench/make_bench_clips.py) and one seeded random MCM window each, all single-threaded:
// our decode with seeking, our decode from frame 0, the libavcodec decode-only limit on the same
// packets (every packet from the key frame before the window through its last frame, and the
// same skipping unreferenced frames outside the sample as our seek path), PyAV seeking the same
// way, and our probe alone. Rounds rotate the order of the sides so machine drift hits all.
// Whole-prep rows (--mcm): `mcm prep` on a shard against a PyTorch loader doing the same work.
//   prep_throughput --clips DIR [--frames 16 --stride 8 --window 128 --size 256 --reps 3 --seed 1
//                   --python PY --json OUT] [--mcm BIN --models DIR --prep-size 64 --threads 2
//                   --device cpu --dtype fp32 --prep-rounds 3 --prep-set k=v ...]
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "io/ffmpeg_util.hpp"
#include "io/media_decode.hpp"

using namespace mcm;
using Clock = std::chrono::steady_clock;
using json = nlohmann::json;
namespace stdfs = std::filesystem;

namespace {
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

int run(const std::string& cmd) {
  int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

std::vector<uint8_t> read_bytes(const stdfs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

struct Clip {
  std::string key, path;
  std::vector<uint8_t> bytes;
  io::MediaInfo info;
  int64_t start = 0;
};

struct Args {
  std::string clips, python = "python3", json_out = "bench/results/prep_throughput.json", scripts = "bench";
  int64_t frames = 16, stride = 8, window = 128;
  int size = 256, reps = 3;
  uint64_t seed = 1;
  std::string mcm, models, device = "cpu", dtype = "fp32";
  int prep_size = 64, threads = 2, prep_rounds = 3;
  std::vector<std::string> prep_set;
};

// The packets of one window for the libavcodec limit, copied out of the container once: from the
// key frame shown at or before the window's first frame through the window's last frame, in
// decode order (leading pictures of an open GOP left out, as our seek path does).
struct LimitInput {
  std::unique_ptr<AVCodecParameters, void (*)(AVCodecParameters*)> par{nullptr, [](AVCodecParameters* p) { avcodec_parameters_free(&p); }};
  std::vector<io::av::PacketPtr> packets;
  std::vector<char> wanted;  // a sampled frame (never skipped)
};

LimitInput limit_input(const Clip& c, int64_t frames, int64_t stride) {
  io::av::MemoryReader mem{c.bytes.data(), c.bytes.size(), 0};
  auto avio = mem.make_avio();
  AVFormatContext* raw = avformat_alloc_context();
  raw->pb = avio.get();
  raw->flags |= AVFMT_FLAG_CUSTOM_IO;
  io::av::check(avformat_open_input(&raw, nullptr, nullptr, nullptr), "open " + c.path);
  io::av::InputPtr fmt(raw);
  io::av::check(avformat_find_stream_info(fmt.get(), nullptr), "stream info " + c.path);
  int s = io::av::check(av_find_best_stream(fmt.get(), AVMEDIA_TYPE_VIDEO, -1, -1, nullptr, 0), "video stream " + c.path);
  LimitInput in;
  in.par.reset(avcodec_parameters_alloc());
  avcodec_parameters_copy(in.par.get(), fmt->streams[s]->codecpar);
  std::vector<io::av::PacketPtr> all;
  std::vector<int64_t> pts;
  for (auto p = io::av::make_packet(); av_read_frame(fmt.get(), p.get()) >= 0; p = io::av::make_packet()) {
    if (p->stream_index != s) continue;
    if (!(p->flags & AV_PKT_FLAG_DISCARD)) pts.push_back(p->pts);
    all.push_back(std::move(p));
  }
  std::sort(pts.begin(), pts.end());
  auto rank = [&](int64_t t) { return std::lower_bound(pts.begin(), pts.end(), t) - pts.begin(); };
  const int64_t last = c.start + (frames - 1) * stride;
  size_t first = 0, end = 0;
  for (size_t i = 0; i < all.size(); ++i) {
    if (all[i]->flags & AV_PKT_FLAG_DISCARD) continue;
    int64_t r = rank(all[i]->pts);
    if ((all[i]->flags & AV_PKT_FLAG_KEY) && r <= c.start) first = i;
    if (r == last) end = i;
  }
  const int64_t k0 = rank(all[first]->pts);
  for (size_t i = first; i <= end; ++i) {
    int64_t r = all[i]->flags & AV_PKT_FLAG_DISCARD ? -1 : rank(all[i]->pts);
    if (r >= 0 && r < k0) continue;
    in.wanted.push_back(r >= c.start && r <= last && (r - c.start) % stride == 0);
    in.packets.push_back(std::move(all[i]));
  }
  return in;
}

// Decode-only: a fresh single-threaded decoder (made before the clock starts) gets the packets,
// then a flush; frames are received and dropped. Returns seconds; `decoded` = frames out.
double time_limit(const LimitInput& in, bool skip_unreferenced, int64_t& decoded) {
  const AVCodec* dec = avcodec_find_decoder(in.par->codec_id);
  io::av::CodecPtr ctx(avcodec_alloc_context3(dec));
  avcodec_parameters_to_context(ctx.get(), in.par.get());
  ctx->thread_count = 1;
  io::av::check(avcodec_open2(ctx.get(), dec, nullptr), "open decoder");
  auto frame = io::av::make_frame();
  decoded = 0;
  auto drain = [&] {
    while (avcodec_receive_frame(ctx.get(), frame.get()) >= 0) { ++decoded; av_frame_unref(frame.get()); }
  };
  auto t0 = Clock::now();
  for (size_t i = 0; i < in.packets.size(); ++i) {
    ctx->skip_frame = skip_unreferenced && !in.wanted[i] ? AVDISCARD_NONREF : AVDISCARD_DEFAULT;
    io::av::check(avcodec_send_packet(ctx.get(), in.packets[i].get()), "send packet");
    drain();
  }
  avcodec_send_packet(ctx.get(), nullptr);
  drain();
  return since(t0);
}

struct Side {
  std::string name, label;
  std::vector<double> seconds;   // per clip, summed over rounds
  std::vector<int64_t> decoded;  // frames out of the decoder, per clip (last round)
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// The whole prep, ours: `mcm prep` on the shard; clips/s from its metrics (the shard's own clock,
// models already loaded). Returns the metrics event, with "wall_seconds" added.
json run_mcm_prep(const Args& a, const std::string& tar, const stdfs::path& scratch) {
  stdfs::path run_dir = scratch / "run", toml = scratch / "prep.toml";
  run("rm -rf " + run_dir.string());
  std::ofstream(toml) << "[run]\ndir = \"" << run_dir.string() << "\"\nseed = 1234\nthreads = " << a.threads
                      << "\nlog_level = \"warn\"\n\n[prep]\nvideos = \"" << tar << "\"\nencode_images = false\nframes = "
                      << a.frames << "\nstride = " << a.stride << "\nresolution = " << a.prep_size
                      << "\ncrop = \"center\"\n\n[models.autoencoder]\nkind = \"autoencoder_kl\"\npath = \""
                      << a.models << "/vae\"\n\n[models.text_encoder]\nkind = \"clip\"\npath = \"" << a.models
                      << "/text_encoder\"\n";
  std::string cmd = a.mcm + " prep --config " + toml.string();
  for (auto& kv : a.prep_set) cmd += " --set " + kv;
  auto t0 = Clock::now();
  int rc = run(cmd);
  double wall = since(t0);
  if (rc != 0) throw Error(cat("`", cmd, "` failed with exit code ", rc));
  json last;
  std::ifstream m(run_dir / "prep" / "metrics-rank0.jsonl");
  for (std::string line; std::getline(m, line);) {
    auto j = json::parse(line, nullptr, false);
    if (!j.is_discarded() && j.value("event", "") == "prep_shard") last = j;
  }
  if (last.is_null()) throw Error(cat("no prep_shard event in ", (run_dir / "prep" / "metrics-rank0.jsonl").string()));
  // The metrics layout moves with prep: seconds and clips from wherever this version puts them.
  double secs = last.contains("timing") ? last["timing"].value("seconds", 0.0) : last.value("seconds", 0.0);
  int64_t clips = last.contains("counts") ? last["counts"].value("clips_written", int64_t{0}) : last.value("written", int64_t{0});
  return {{"seconds", secs}, {"clips", clips}, {"clips_per_s", secs > 0 ? clips / secs : 0.0}, {"wall_seconds", wall},
          {"output", last.value("output", "")}, {"metrics", last}};
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--clips") a.clips = v;
    else if (k == "--frames") a.frames = std::stoll(v);
    else if (k == "--stride") a.stride = std::stoll(v);
    else if (k == "--window") a.window = std::stoll(v);
    else if (k == "--size") a.size = std::stoi(v);
    else if (k == "--reps") a.reps = std::stoi(v);
    else if (k == "--seed") a.seed = std::stoull(v);
    else if (k == "--python") a.python = v;
    else if (k == "--scripts") a.scripts = v;
    else if (k == "--json") a.json_out = v;
    else if (k == "--mcm") a.mcm = v;
    else if (k == "--models") a.models = v;
    else if (k == "--prep-size") a.prep_size = std::stoi(v);
    else if (k == "--threads") a.threads = std::stoi(v);
    else if (k == "--prep-rounds") a.prep_rounds = std::stoi(v);
    else if (k == "--device") a.device = v;
    else if (k == "--dtype") a.dtype = v;
    else if (k == "--prep-set") a.prep_set.push_back(v);
    else { std::cerr << "unknown flag " << k << "\n"; return 2; }
  }
  if (a.clips.empty()) { std::cerr << "usage: prep_throughput --clips DIR [...] (see the file's header)\n"; return 2; }
  const int64_t span = (a.frames - 1) * a.stride + 1;
  stdfs::path scratch = stdfs::temp_directory_path() / "mcm-prep-throughput";
  run("rm -rf " + scratch.string() + " && mkdir -p " + scratch.string());

  // Clips long enough for the window, each with one seeded random start.
  std::vector<Clip> clips;
  std::mt19937_64 rng(a.seed);
  std::vector<stdfs::path> paths;
  for (auto& e : stdfs::directory_iterator(a.clips))
    if (e.path().extension() == ".mp4") paths.push_back(e.path());
  std::sort(paths.begin(), paths.end());
  double seconds_of_video = 0;
  for (auto& p : paths) {
    Clip c{p.stem().string(), p.string(), read_bytes(p), {}, 0};
    c.info = io::probe_media(c.bytes.data(), c.bytes.size(), c.path);
    if (c.info.frames < std::max(span, a.window)) continue;
    c.start = static_cast<int64_t>(rng() % static_cast<uint64_t>(c.info.frames - std::max(span, a.window) + 1));
    seconds_of_video += c.info.frames / c.info.fps;
    clips.push_back(std::move(c));
  }
  if (clips.empty()) { std::cerr << "no clip in " << a.clips << " has " << a.window << " frames\n"; return 1; }
  const size_t n = clips.size();
  json windows = json::array();
  for (auto& c : clips) windows.push_back({{"path", c.path}, {"start", c.start}});
  std::ofstream(scratch / "windows.json") << windows.dump();
  std::vector<LimitInput> limit;
  for (auto& c : clips) limit.push_back(limit_input(c, a.frames, a.stride));

  std::vector<Side> sides = {{"mcm_seek", "mcm decode, seek", {}, {}},
                             {"mcm_from_start", "mcm decode, from frame 0", {}, {}},
                             {"limit_all", "libavcodec limit, all packets", {}, {}},
                             {"limit_skip", "libavcodec limit, skip unref.", {}, {}},
                             {"pyav", "PyAV seek + decode", {}, {}},
                             {"mcm_probe", "mcm probe (open + demux)", {}, {}}};
  for (auto& s : sides) { s.seconds.assign(n, 0.0); s.decoded.assign(n, 0); }
  io::DecodeOptions o;
  o.frames = a.frames; o.stride = a.stride; o.width = o.height = a.size; o.threads = 1;
  int64_t mismatches = 0, pyav_index_mismatches = 0;
  bool pyav_ok = true;
  for (int r = 0; r < a.reps; ++r) {
    for (size_t k = 0; k < sides.size(); ++k) {
      Side& s = sides[(k + r) % sides.size()];
      if (s.name == "pyav") {
        std::string out = (scratch / "pyav.json").string();
        std::string cmd = cat(a.python, " ", a.scripts, "/pyav_loader.py --windows ", (scratch / "windows.json").string(),
                              " --frames ", a.frames, " --stride ", a.stride, " --size ", a.size, " --out ", out);
        if (!pyav_ok || run(cmd) != 0) { pyav_ok = false; continue; }
        auto j = json::parse(std::ifstream(out));
        for (size_t i = 0; i < n; ++i) {
          s.seconds[i] += j["seconds"][i].get<double>();
          s.decoded[i] = j["decoded_frames"][i].get<int64_t>();
          std::vector<int64_t> idx = j["indices"][i];
          pyav_index_mismatches += idx.front() != clips[i].start || static_cast<int64_t>(idx.size()) != a.frames;
        }
        continue;
      }
      for (size_t i = 0; i < n; ++i) {
        const Clip& c = clips[i];
        auto t0 = Clock::now();
        if (s.name == "mcm_probe") {
          io::probe_media(c.bytes.data(), c.bytes.size(), c.path);
          s.seconds[i] += since(t0);
        } else if (s.name == "limit_all" || s.name == "limit_skip") {
          s.seconds[i] += time_limit(limit[i], s.name == "limit_skip", s.decoded[i]);
        } else {
          io::DecodeOptions oo = o;
          oo.start = c.start;
          oo.seek = s.name == "mcm_seek";
          auto clip = io::decode_clip(c.bytes.data(), c.bytes.size(), c.path, oo);
          s.seconds[i] += since(t0);
          s.decoded[i] = clip.decoded_frames;
          if (r == 0 && oo.seek) {  // the same frames as decoding from frame 0, byte for byte
            oo.seek = false;
            auto ref = io::decode_clip(c.bytes.data(), c.bytes.size(), c.path, oo);
            mismatches += ref.rgb != clip.rgb || ref.frame_indices != clip.frame_indices || clip.method != io::DecodeMethod::seek;
          }
        }
      }
    }
  }

  // Decode table.
  const double mean_len = seconds_of_video / n;
  std::printf("\nprep_throughput (decode): %zu clips (mean %.1f s, %dx%d, H.264), one window each: %lld frames at stride %lld "
              "(%lld of a %lld-frame window), -> %dx%d RGB; %d rounds, 1 thread\n",
              n, mean_len, clips[0].info.width, clips[0].info.height, static_cast<long long>(a.frames),
              static_cast<long long>(a.stride), static_cast<long long>(span), static_cast<long long>(a.window), a.size,
              a.size, a.reps);
  std::printf("%-32s %10s %12s %14s %12s\n", "side", "clips/s", "ms/clip med", "frames decoded", "vs mcm seek");
  const double seek_total = std::accumulate(sides[0].seconds.begin(), sides[0].seconds.end(), 0.0);
  json rows = json::object();
  for (auto& s : sides) {
    double total = std::accumulate(s.seconds.begin(), s.seconds.end(), 0.0);
    if (total <= 0) continue;
    double rate = n * a.reps / total;
    double dec = std::accumulate(s.decoded.begin(), s.decoded.end(), 0.0) / n;
    std::vector<double> per(s.seconds);
    for (auto& x : per) x = x / a.reps * 1e3;
    std::printf("%-32s %10.2f %12.1f %14.1f %12.2f\n", s.label.c_str(), rate, median(per), dec, seek_total / total);
    rows[s.name] = {{"clips_per_s", rate}, {"seconds_total", total}, {"ms_per_clip_median", median(per)},
                    {"ms_per_clip", per}, {"frames_decoded_mean", dec}, {"decoded_frames", s.decoded}};
  }
  std::printf("checks: seek == from frame 0 (bytes, indices) on %zu/%zu clips; PyAV windows == ours on %s\n",
              n - static_cast<size_t>(mismatches), n,
              pyav_ok ? cat(n * a.reps - pyav_index_mismatches, "/", n * a.reps).c_str() : "(PyAV failed)");
  json clip_list = json::array();
  for (auto& c : clips)
    clip_list.push_back({{"key", c.key}, {"frames", c.info.frames}, {"fps", c.info.fps}, {"key_frames", c.info.key_frames},
                         {"start", c.start}, {"bytes", c.bytes.size()}});
  json doc{{"decode", {{"clips", clip_list}, {"frames", a.frames}, {"stride", a.stride}, {"window", a.window},
                       {"size", a.size}, {"reps", a.reps}, {"threads", 1}, {"seed", a.seed}, {"rows", rows},
                       {"seek_equals_from_start", mismatches == 0}, {"pyav_windows_equal", pyav_ok && pyav_index_mismatches == 0},
                       {"ffmpeg", io::av::version()}}}};

  // Whole prep: ours against the PyTorch loader on the same shard and windows, in rounds that
  // alternate which goes first.
  if (!a.mcm.empty()) {
    std::string tar = (stdfs::path(a.clips) / "clips.tar").string();
    json ours = json::array(), theirs = json::array();
    std::string windows_h5;
    for (int r = 0; r < a.prep_rounds; ++r) {
      for (int k = 0; k < 2; ++k) {
        if ((k + r) % 2 == 0) {
          try {
            ours.push_back(run_mcm_prep(a, tar, scratch));
            windows_h5 = ours.back().value("output", "");
          } catch (const std::exception& e) {
            std::cerr << "mcm prep: " << e.what() << "\n";
          }
        } else {
          std::string out = (scratch / "torch.json").string();
          std::string cmd = cat(a.python, " ", a.scripts, "/prep_torch_loader.py --tar ", tar, " --models ", a.models,
                                " --size ", a.prep_size, " --frames ", a.frames, " --stride ", a.stride, " --threads ",
                                a.threads, " --device ", a.device, " --dtype ", a.dtype, " --out ", out);
          if (!windows_h5.empty()) cmd += " --windows-h5 " + windows_h5;  // the windows prep chose
          if (run(cmd) == 0) theirs.push_back(json::parse(std::ifstream(out)));
        }
      }
    }
    // Other work on the machine slows single rounds down: the median and the best round are
    // reported next to the total.
    auto total = [](const json& runs) {
      double secs = 0;
      int64_t clips = 0;
      std::vector<double> rates;
      for (auto& j : runs) {
        secs += j.value("seconds", 0.0);
        clips += j.value("clips", int64_t{0});
        rates.push_back(j.value("clips_per_s", 0.0));
      }
      double best = rates.empty() ? 0.0 : *std::max_element(rates.begin(), rates.end());
      return json{{"seconds", secs}, {"clips", clips}, {"clips_per_s", secs > 0 ? clips / secs : 0.0},
                  {"clips_per_s_median", median(rates)}, {"clips_per_s_best", best}, {"runs", runs}};
    };
    json o_sum = total(ours), t_sum = total(theirs);
    std::printf("\nprep_throughput (whole prep): decode + SD-VAE-size AutoencoderKL (random weights) at %dx%d + CLIP text "
                "encoder, %s %s, %d threads, one rank, %d rounds\n", a.prep_size, a.prep_size, a.device.c_str(),
                a.dtype.c_str(), a.threads, a.prep_rounds);
    std::printf("%-32s %9s %9s %9s %9s %7s %9s %9s\n", "side", "clips/s", "median", "best", "seconds", "clips",
                "decode s", "encode s");
    auto row = [](const char* label, const json& sum) {
      double dec = 0, enc = 0;
      for (auto& j : sum["runs"]) {
        const json& t = j.contains("metrics") && j["metrics"].contains("timing") ? j["metrics"]["timing"] : j;
        dec += t.value("decode_seconds", 0.0);
        enc += t.value("encode_seconds", 0.0);
      }
      if (sum["clips"].get<int64_t>() == 0) { std::printf("%-32s %9s\n", label, "failed"); return; }
      std::printf("%-32s %9.3f %9.3f %9.3f %9.2f %7lld %9.2f %9.2f\n", label, sum["clips_per_s"].get<double>(),
                  sum["clips_per_s_median"].get<double>(), sum["clips_per_s_best"].get<double>(),
                  sum["seconds"].get<double>(), static_cast<long long>(sum["clips"].get<int64_t>()), dec, enc);
    };
    row("mcm prep", o_sum);
    row("PyTorch loader (PyAV+diffusers)", t_sum);
    auto ratio_of = [&](const char* k) {
      double t = t_sum[k].get<double>();
      return t > 0 ? o_sum[k].get<double>() / t : 0.0;
    };
    double ratio = ratio_of("clips_per_s_median");
    if (ratio > 0)
      std::printf("mcm prep / PyTorch loader: %.2fx (median round), %.2fx (best round), %.2fx (total)\n", ratio,
                  ratio_of("clips_per_s_best"), ratio_of("clips_per_s"));
    doc["whole_prep"] = {{"resolution", a.prep_size}, {"device", a.device}, {"dtype", a.dtype}, {"threads", a.threads},
                         {"rounds", a.prep_rounds}, {"mcm", o_sum}, {"pytorch", t_sum}, {"mcm_vs_pytorch_median", ratio},
                         {"mcm_vs_pytorch_best", ratio_of("clips_per_s_best")}, {"mcm_vs_pytorch_total", ratio_of("clips_per_s")}};
  }
  stdfs::create_directories(stdfs::path(a.json_out).parent_path());
  std::ofstream(a.json_out) << doc.dump(2) << "\n";
  std::printf("wrote %s\n", a.json_out.c_str());
  return mismatches == 0 ? 0 : 1;
}

// bench/manifest_record: what recording one output in the manifest costs as a run grows, the
// way a stage records it (StageRun: one journal append + fdatasync, Note [manifest journals]),
// against the former whole-file rewrite (locked read-modify-write of manifest.json) at the same
// sizes. Flat is the target.
//
//   build/bench/manifest_record [--outputs N] [--step S] [--old-samples K] [--dir D]
//                               [--json out.json]
//
// Entries are prepared before timing (shaped like prep's: path, bytes, checksum, stage hash,
// input, counts), so no file is checksummed in the timed part: this measures the manifest only.
// The run folder is a fresh temporary one under --dir (default /tmp), removed afterwards.
#include <sys/statfs.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "core/config.hpp"
#include "core/error.hpp"
#include "core/manifest.hpp"
#include "dist/dist_context.hpp"
#include "stages/stage_run.hpp"

using namespace mcm;
using manifest::json;
using Clock = std::chrono::steady_clock;

namespace {

struct Args {
  int64_t outputs = 10000, step = 1000, old_samples = 5;
  std::string dir = "/tmp", json_out = MCM_SOURCE_DIR "/bench/results/manifest_record.json";
};

double us_since(Clock::time_point t0) { return std::chrono::duration<double, std::micro>(Clock::now() - t0).count(); }

double percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())))];
}

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s / static_cast<double>(v.size());
}

std::string fs_type(const std::string& dir) {
  struct statfs s{};
  if (::statfs(dir.c_str(), &s) != 0) return "?";
  switch (static_cast<unsigned long>(s.f_type)) {
    case 0xEF53: return "ext4";
    case 0x58465342: return "xfs";
    case 0x01021994: return "tmpfs";
    case 0x9123683E: return "btrfs";
    case 0x794C7630: return "overlayfs";
    case 0x6969: return "nfs";
    case 0x0BD00BD0: return "lustre";
    case 0x47504653: return "gpfs";
    default: return cat("0x", std::hex, static_cast<unsigned long>(s.f_type));
  }
}

/// An output entry shaped like prep's (see data_prep/prep.cpp), ~400 bytes as JSON.
json make_entry(int64_t i, const std::string& stage_hash) {
  char path[64], input[64], sum[32], in_sum[32];
  std::snprintf(path, sizeof path, "prep/video-%05lld.h5", static_cast<long long>(i));
  std::snprintf(input, sizeof input, "data/videos/%05lld.tar", static_cast<long long>(i));
  std::snprintf(sum, sizeof sum, "xxh3:%016llx", static_cast<unsigned long long>(i * 0x9E3779B97F4A7C15ull));
  std::snprintf(in_sum, sizeof in_sum, "xxh3:%016llx", static_cast<unsigned long long>(~i * 0xC2B2AE3D27D4EB4Full));
  return json{{"path", path},
              {"bytes", 1048576 + i},
              {"checksum", sum},
              {"stage_hash", stage_hash},
              {"rank", 0},
              {"input", {{"path", input}, {"bytes", 4194304 + i}, {"checksum", in_sum}}},
              {"counts", {{"clips_read", 12}, {"clips_written", 11}, {"skipped", {{"short_clip", 1}}}}},
              {"reused_from", "prep-2025-01-01T00:00:00Z-abcdef"}};
}

/// The former Manifest::add_output: lock, read and parse manifest.json, append, rewrite atomically.
void old_add_output(manifest::Manifest& m, const std::string& id, const json& entry) {
  m.update([&](json& doc) {
    for (auto& r : doc["records"])
      if (r["id"] == id) r["outputs"].push_back(entry);
  });
}

void remove_tree(const std::string& dir) {
  // Not std::filesystem::remove_all: libtorch exports a broken copy of it (see tests/test_util.hpp).
  std::string cmd = "rm -rf '" + dir + "'";
  if (std::system(cmd.c_str()) != 0) std::fprintf(stderr, "manifest_record: could not remove %s\n", dir.c_str());
}

}  // namespace

int main(int argc, char** argv) try {
  dist::DistContext ctx(&argc, &argv);
  Args a;
  for (int i = 1; i < argc; i += 2) {
    std::string k = argv[i];
    require<ConfigError>(i + 1 < argc, "manifest_record: ", k, " needs a value");
    std::string v = argv[i + 1];
    if (k == "--outputs") a.outputs = std::stoll(v);
    else if (k == "--step") a.step = std::stoll(v);
    else if (k == "--old-samples") a.old_samples = std::stoll(v);
    else if (k == "--dir") a.dir = v;
    else if (k == "--json") a.json_out = v;
    else throw ConfigError(cat("manifest_record: unknown option ", k));
  }
  require<ConfigError>(a.step > 0 && a.outputs >= a.step && a.old_samples > 0, "manifest_record: need outputs >= step > 0");
  require<ConfigError>(ctx.world_size() == 1, "manifest_record: run it as one process");

  std::string tmpl = a.dir + "/mcm-bench-manifest-XXXXXX";
  require<IoError>(::mkdtemp(tmpl.data()) != nullptr, "mkdtemp ", tmpl, ": ", errno_text(errno));
  const std::string run = tmpl;
  std::printf("manifest_record: %lld outputs in %s (%s); entries prepared in advance, no file checksums\n"
              "timed (this measures the manifest's cost only)\n",
              static_cast<long long>(a.outputs), run.c_str(), fs_type(run).c_str());

  // New: through StageRun, as prep records a reused shard.
  auto cfg = config::load({}, {"run.dir=" + run + "/new"});
  std::vector<double> per;  // microseconds per record, in order
  double finish_ms = 0;
  size_t merged = 0;
  {
    stages::StageRun stage("bench", "bench/1", cfg, ctx, {"run.seed"});
    std::vector<json> entries;
    entries.reserve(static_cast<size_t>(a.outputs));
    for (int64_t i = 0; i < a.outputs; ++i) entries.push_back(make_entry(i, stage.stage_hash()));
    per.reserve(entries.size());
    for (auto& e : entries) {
      auto t0 = Clock::now();
      stage.record_reused(e);
      per.push_back(us_since(t0));
    }
    auto t0 = Clock::now();
    stage.finish({});
    finish_ms = us_since(t0) / 1000;
    auto doc = stage.manifest().read_stored();
    merged = (*manifest::find_record(doc, stage.id()))["outputs"].size();
    require<DataError>(merged == entries.size(), "bench: merged ", merged, " of ", entries.size(), " entries");
  }

  // Old: a record that already holds n outputs, then `old_samples` whole-file rewrites.
  json rows = json::array();
  std::printf("\n%9s | %12s %12s %12s | %14s %14s\n", "outputs", "journal mean", "journal p50", "journal p99",
              "rewrite mean", "manifest.json");
  std::printf("%9s | %12s %12s %12s | %14s %14s\n", "recorded", "us/record", "us/record", "us/record", "us/record", "bytes");
  double old_total_s = 0;
  manifest::Manifest old(run + "/old");
  std::string old_id = old.begin_record("bench", json::object());
  int64_t in_old = 0;
  for (int64_t n = a.step; n <= a.outputs; n += a.step) {
    std::vector<double> window(per.begin() + (n - a.step), per.begin() + n);
    // Bring the old record to n - old_samples outputs in one rewrite, then time the last ones.
    int64_t fill_to = n - std::min(a.old_samples, a.step);
    old.update([&](json& doc) {
      for (auto& r : doc["records"])
        if (r["id"] == old_id)
          for (; in_old < fill_to; ++in_old) r["outputs"].push_back(make_entry(in_old, "x"));
    });
    std::vector<double> olds;
    for (; in_old < n; ++in_old) {
      json e = make_entry(in_old, "x");
      auto t0 = Clock::now();
      old_add_output(old, old_id, e);
      olds.push_back(us_since(t0));
    }
    double old_mean = mean(olds);
    old_total_s += old_mean * static_cast<double>(a.step) / 1e6;
    std::error_code ec;
    auto bytes = std::filesystem::file_size(old.path(), ec);
    json row{{"outputs_recorded", n},
             {"journal_us_mean", mean(window)},
             {"journal_us_p50", percentile(window, 0.5)},
             {"journal_us_p99", percentile(window, 0.99)},
             {"rewrite_us_mean", old_mean},
             {"rewrite_samples", olds.size()},
             {"manifest_json_bytes", ec ? 0 : bytes}};
    std::printf("%9lld | %12.1f %12.1f %12.1f | %14.1f %14llu\n", static_cast<long long>(n), mean(window),
                percentile(window, 0.5), percentile(window, 0.99), old_mean,
                static_cast<unsigned long long>(ec ? 0 : bytes));
    rows.push_back(row);
  }
  double new_total_s = 0;
  for (double x : per) new_total_s += x / 1e6;
  std::printf("\nall %lld records: journal %.2f s in total, then %.1f ms to merge them into manifest.json at\n"
              "finish; whole-file rewrite ~%.1f s in total (sum of the means above x %lld per row)\n",
              static_cast<long long>(a.outputs), new_total_s, finish_ms, old_total_s, static_cast<long long>(a.step));

  json out{{"bench", "manifest_record"},
           {"filesystem", fs_type(run)},
           {"outputs", a.outputs},
           {"step", a.step},
           {"old_samples_per_row", a.old_samples},
           {"note", "entries prepared in advance: no file checksums in the timing; journal = StageRun::record_reused "
                    "(one O_APPEND write + fdatasync); rewrite = the former Manifest::add_output (lock, parse "
                    "manifest.json, append, write temp + fsync + rename + dir fsync)"},
           {"rows", rows},
           {"journal_total_s", new_total_s},
           {"finish_merge_ms", finish_ms},
           {"rewrite_total_s_estimate", old_total_s}};
  remove_tree(run);
  if (!a.json_out.empty()) {
    std::ofstream f(a.json_out);
    require<IoError>(static_cast<bool>(f), "write ", a.json_out);
    f << out.dump(2) << "\n";
    std::printf("wrote %s\n", a.json_out.c_str());
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "manifest_record: %s\n", e.what());
  return 1;
}

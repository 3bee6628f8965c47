// Heartbeat files and the timeout diagnosis: which peer stopped, which is elsewhere.
#include "dist/watchdog.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "core/fs.hpp"
#include "core/log.hpp"

namespace mcm::dist {
namespace stdfs = std::filesystem;

stdfs::path heartbeat_path(const stdfs::path& dir, int rank) { return dir / cat("rank", rank, ".json"); }

double unix_now() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

std::optional<Heartbeat> read_heartbeat(const stdfs::path& dir, int rank) {
  std::string text;
  try {
    if (!fs::read_text_if_exists(heartbeat_path(dir, rank), text)) return std::nullopt;
    auto j = nlohmann::json::parse(text);
    Heartbeat hb;
    hb.rank = j.at("rank").get<int>();
    hb.step = j.at("step").get<int64_t>();
    hb.op = j.at("op").get<std::string>();
    hb.pid = j.at("pid").get<int64_t>();
    hb.host = j.at("host").get<std::string>();
    hb.time = j.at("time").get<double>();
    return hb;
  } catch (const std::exception&) {
    return std::nullopt;  // unreadable counts as missing: the diagnosis says so
  }
}

void write_heartbeat(const stdfs::path& dir, const Heartbeat& hb) {
  nlohmann::json j{{"rank", hb.rank}, {"step", hb.step}, {"op", hb.op},
                   {"pid", hb.pid},   {"host", hb.host}, {"time", hb.time}};
  const auto final_path = heartbeat_path(dir, hb.rank);
  auto tmp = final_path;
  tmp += ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << j.dump() << '\n';
    if (!out.flush()) throw IoError(cat("write heartbeat ", tmp, " (rank ", hb.rank, "): ", errno_text(errno)));
  }
  if (std::rename(tmp.c_str(), final_path.c_str()) != 0)
    throw IoError(cat("rename heartbeat ", tmp, " (rank ", hb.rank, "): ", errno_text(errno)));
}

double stale_after_s(double timeout_s, double interval_s) {
  return std::max(2.5 * interval_s, std::min(timeout_s / 2, 10.0));
}

namespace {
std::string fmt_s(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", s);
  return buf;
}

/// "rank 1", "ranks 1, 2, 3", "ranks 1, 2, ... (40 in all)".
std::string rank_list(const std::vector<int>& r) {
  std::string s = r.size() == 1 ? "rank " : "ranks ";
  const size_t shown = std::min<size_t>(r.size(), 8);
  for (size_t i = 0; i < shown; ++i) s += (i ? ", " : "") + std::to_string(r[i]);
  if (shown < r.size()) s += cat(", ... (", r.size(), " in all)");
  return s;
}

void append(std::string& s, const std::string& part) { s += (s.empty() ? "" : "; ") + part; }
}  // namespace

std::string describe_peers(const std::vector<std::optional<Heartbeat>>& beats, int self, int64_t step,
                           const std::string& op, double now, double stale_after) {
  std::string stale, elsewhere;
  std::vector<int> missing, with_us;
  int n_stale = 0, n_elsewhere = 0;
  for (int r = 0; r < static_cast<int>(beats.size()); ++r) {
    if (r == self) continue;
    const auto& b = beats[r];
    if (!b) {
      missing.push_back(r);
      continue;
    }
    const double age = now - b->time;
    if (age > stale_after) {
      // Bounded: a 1000-rank job with a dead node still gets a readable message.
      if (++n_stale <= 8)
        append(stale, cat("rank ", r, " stopped responding (last heartbeat ", fmt_s(age), " s ago, at step ",
                          b->step, ", in '", b->op, "'", b->host.empty() ? "" : ", host " + b->host,
                          b->pid ? cat(", pid ", b->pid) : "", ")"));
    } else if (b->step != step || b->op != op) {
      if (++n_elsewhere <= 8) append(elsewhere, cat("rank ", r, " is alive but in '", b->op, "' at step ", b->step));
    } else {
      with_us.push_back(r);
    }
  }
  std::string s;
  if (!stale.empty()) append(s, stale + (n_stale > 8 ? cat(" (", n_stale, " stopped ranks in all)") : ""));
  if (!elsewhere.empty()) append(s, elsewhere + (n_elsewhere > 8 ? cat(" (", n_elsewhere, " such ranks in all)") : ""));
  if (!missing.empty())
    append(s, rank_list(missing) + (missing.size() == 1 ? " has" : " have") + " no heartbeat file (never started or another folder)");
  if (s.empty())
    s = with_us.empty() ? "no peers"
                        : "every rank is alive and waits in this collective at this step (the transport itself is "
                          "stuck: network, NCCL, or mismatched collective arguments)";
  return s;
}

Liveness::Liveness(int rank, int world, std::string host, stdfs::path dir, double interval_s)
    : rank_(rank), world_(world), host_(std::move(host)), dir_(std::move(dir)), interval_s_(interval_s) {
  if (dir_.empty()) return;
  require<DistError>(interval_s_ > 0, "heartbeat interval must be > 0 s (rank ", rank_, "), got ", interval_s_);
  fs::make_dirs(dir_);
  write_heartbeat(dir_, snapshot());  // the first beat fails loudly, on the caller's thread
  thread_ = std::thread([this] { run(); });
}

Liveness::~Liveness() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard lk(mu_);
    stop_ = true;
    phase_ = "exited";
    op_.clear();
  }
  cv_.notify_all();
  thread_.join();
  try {
    write_heartbeat(dir_, snapshot());
  } catch (const std::exception&) {
  }
}

void Liveness::run() {
  bool warned = false;
  std::unique_lock lk(mu_);
  while (!stop_) {
    cv_.wait_for(lk, std::chrono::duration<double>(interval_s_), [this] { return stop_; });
    if (stop_) break;
    lk.unlock();
    try {
      write_heartbeat(dir_, snapshot());
    } catch (const std::exception& e) {
      // A full or vanished shared folder must not kill training: say it once, keep trying.
      if (!warned) log::warn("heartbeat (rank ", rank_, "): ", e.what());
      warned = true;
    }
    lk.lock();
  }
}

Heartbeat Liveness::snapshot() const {
  std::lock_guard lk(mu_);
  return Heartbeat{rank_, step_, op_.empty() ? phase_ : op_, static_cast<int64_t>(::getpid()), host_, unix_now()};
}

void Liveness::set_step(int64_t step) {
  std::lock_guard lk(mu_);
  step_ = step;
  if (phase_ == "startup") phase_ = "compute";  // for callers that never name their phases
}
int64_t Liveness::step() const {
  std::lock_guard lk(mu_);
  return step_;
}
void Liveness::set_phase(std::string phase) {
  std::lock_guard lk(mu_);
  phase_ = std::move(phase);
}
std::string Liveness::op() const {
  std::lock_guard lk(mu_);
  return op_.empty() ? phase_ : op_;
}

Liveness::OpScope::OpScope(Liveness& l, std::string op) : l_(l) {
  std::lock_guard lk(l_.mu_);
  l_.op_ = std::move(op);
}
Liveness::OpScope::~OpScope() {
  std::lock_guard lk(l_.mu_);
  l_.op_.clear();
}

std::string Liveness::diagnose(double timeout_s) const {
  if (dir_.empty()) {
    std::vector<int> peers;
    for (int r = 0; r < world_; ++r)
      if (r != rank_) peers.push_back(r);
    if (peers.empty()) return "no peers";
    return cat("no heartbeat folder set, so the state of ", rank_list(peers),
               " is unknown (set heartbeat_dir to have the stalled rank named)");
  }
  std::vector<std::optional<Heartbeat>> beats(world_);
  for (int r = 0; r < world_; ++r)
    if (r != rank_) beats[r] = read_heartbeat(dir_, r);
  const auto me = snapshot();
  return describe_peers(beats, rank_, me.step, me.op, unix_now(), stale_after_s(timeout_s, interval_s_));
}

}  // namespace mcm::dist

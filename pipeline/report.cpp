// `mcm report`: the run's results for people. report/index.html and report/summary.md hold the
// method x steps tables of eval/metrics.json (FVD, text alignment, frame quality; the best of each
// step count in bold), the paper's own table (../shared/MCM.md) beside them for orientation, PNG
// plots of every metric against steps and of the training losses (metrics.jsonl), GIF grids that
// put every method's samples of the same prompts and noise side by side per step count (with the
// prompts listed) plus each job's preview, the evaluation protocol, and for each number its
// lineage from the manifest: the eval record, the sample file and its checksum, the record that
// sampled it, the model it came from and the record that trained that model. Plots are drawn by
// report/plot.hpp and written through FFmpeg, so the stage needs nothing the pipeline does not.
// Rank 0 writes everything; the report is small and rebuilt on every run.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "core/error.hpp"
#include "core/fs.hpp"
#include "core/log.hpp"
#include "core/manifest.hpp"
#include "io/hdf5_store.hpp"
#include "io/media_encode.hpp"
#include "pipeline/report_config.hpp"
#include "report/plot.hpp"
#include "stages/stage_run.hpp"
#include "stages/stage_table.hpp"

namespace mcm::stages {
namespace {
using json = nlohmann::json;
namespace stdfs = std::filesystem;

constexpr const char* kReportCodeVersion = "1";
MCM_CONFIG_SECTION(ReportSection);

// Methods in table order, with their labels; others follow in name order.
const std::vector<std::pair<std::string, std::string>>& method_labels() {
  static const std::vector<std::pair<std::string, std::string>> m{{"teacher_ddim", "DDIM (teacher)"},
                                                                   {"teacher_dpm", "DPM-Solver++ (teacher)"},
                                                                   {"baseline", "LCM (baseline)"},
                                                                   {"student", "MCM (student)"}};
  return m;
}
std::string label_of(const std::string& method) {
  for (const auto& [k, v] : method_labels())
    if (k == method) return v;
  if (method.rfind("distill_", 0) == 0) return cat("MCM, ", method.substr(8), " (ablation)");  // sample.ablations
  return method;
}

std::string esc(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      default: o += c;
    }
  }
  return o;
}

std::string fmt(double v, int digits) {
  std::ostringstream s;
  s.setf(std::ios::fixed);
  s.precision(digits);
  s << v;
  return s.str();
}

// One row of eval/metrics.json's "jobs".
struct Job {
  std::string name, method, file;
  int64_t steps = 0;
  json m;
};

// A table's metric: how to read it from a job, how to print it, which way is better.
struct Metric {
  std::string key, title, note;
  std::function<std::optional<double>(const json&)> get;
  int digits = 3;
  int better = -1;  ///< -1 lower, +1 higher, 0 neither
};

std::optional<double> at(const json& j, std::initializer_list<const char*> path, double scale = 1.0) {
  const json* p = &j;
  for (const char* k : path) {
    if (!p->is_object() || !p->contains(k)) return std::nullopt;
    p = &(*p)[k];
  }
  if (!p->is_number()) return std::nullopt;
  return p->get<double>() * scale;
}

// The paper's ModelScopeT2V table (WebVid-mini, steps 1/2/4/8), ../shared/MCM.md.
struct PaperRow {
  const char* method;
  double fvd[4], clipsim[4];
};
const PaperRow kPaper[] = {{"DDIM", {7231, 2309, 1229, 652}, {20.47, 20.06, 23.68, 28.46}},
                           {"DPM++", {2030, 1142, 477, 506}, {22.38, 24.79, 29.70, 31.00}},
                           {"LCM", {854, 658, 603, 637}, {27.50, 29.28, 30.48, 30.73}},
                           {"MCM", {526, 450, 456, 503}, {29.81, 30.63, 30.55, 29.58}}};

// (step, value) of `pointer` in a metrics.jsonl, the last line per step winning (a resumed run
// repeats the steps after its checkpoint).
std::vector<std::pair<double, double>> curve(const stdfs::path& file, const std::string& pointer) {
  std::map<double, double> by_step;
  std::ifstream in(file);
  const json::json_pointer ptr(pointer);
  for (std::string line; std::getline(in, line);) {
    json j;
    try {
      j = json::parse(line);
    } catch (const json::exception&) {
      continue;  // a torn last line of a killed run
    }
    if (!j.contains("step") || !j.contains(ptr) || !j[ptr].is_number()) continue;
    by_step[j["step"].get<double>()] = j[ptr].get<double>();
  }
  return {by_step.begin(), by_step.end()};
}

report::Series series_of(const std::string& name, const std::vector<std::pair<double, double>>& pts) {
  report::Series s{name, {}, {}};
  for (auto [x, y] : pts) s.x.push_back(x), s.y.push_back(y);
  return s;
}

class ReportWriter {
 public:
  ReportWriter(const stdfs::path& run_dir, const ReportSection& rc, StageRun& stage)
      : run_(run_dir), out_(run_dir / "report"), rc_(rc), stage_(stage) {}

  void load() {
    const stdfs::path metrics = run_ / "eval" / "metrics.json";
    require<IoError>(stdfs::is_regular_file(metrics), "report: no ", metrics, ": run `mcm eval` first");
    try {
      metrics_ = json::parse(fs::read_text(metrics));
    } catch (const json::exception& e) {
      throw DataError(cat("report: ", metrics, ": ", e.what()));
    }
    require<DataError>(metrics_.contains("jobs") && metrics_["jobs"].is_object() && metrics_.contains("protocol"), "report: ",
                       metrics, " has no \"jobs\" or \"protocol\" (not written by `mcm eval`?)");
    for (auto& [name, j] : metrics_["jobs"].items()) {
      require<DataError>(j.contains("method") && j.contains("steps") && j.contains("file") && j.contains("fvd"), "report: ",
                         metrics, ": job \"", name, "\" lacks method, steps, file or fvd");
      jobs_.push_back({name, j["method"].get<std::string>(), j["file"].get<std::string>(), j["steps"].get<int64_t>(), j});
    }
    require<DataError>(!jobs_.empty(), "report: ", metrics, " holds no jobs");
    for (const auto& [k, v] : method_labels())
      for (const auto& j : jobs_)
        if (j.method == k && std::find(methods_.begin(), methods_.end(), k) == methods_.end()) methods_.push_back(k);
    std::set<std::string> rest;
    for (const auto& j : jobs_)
      if (std::find(methods_.begin(), methods_.end(), j.method) == methods_.end()) rest.insert(j.method);
    methods_.insert(methods_.end(), rest.begin(), rest.end());
    for (const auto& j : jobs_) steps_.insert(j.steps);
    manifest_ = manifest::Manifest(run_).read();
    eval_entry_ = manifest::recorded_outputs(manifest_, "eval")["eval/metrics.json"];
    samples_ = manifest::recorded_outputs(manifest_, "sample");
  }

  void write() {
    fs::make_dirs(out_ / "plots");
    fs::make_dirs(out_ / "grids");
    const auto metrics = metric_list();
    std::ostringstream html, md;
    head(html, md);
    html << "<h2>Results: method x sampling steps</h2>\n<p class=note>Every number links to its lineage below. "
            "The best of each step count is in bold.</p>\n";
    md << "## Results: method x sampling steps\n\nThe best of each step count is in bold.\n\n";
    for (const auto& m : metrics) table(html, md, m);
    reference_quality(html, md);
    paper(html, md);
    plots(html, md, metrics);
    grids(html, md);
    lineage(html, md);
    protocol(html, md);
    html << "</body></html>\n";
    put(out_ / "index.html", html.str(), "report");
    put(out_ / "summary.md", md.str(), "report");
  }

 private:
  std::vector<Metric> metric_list() const {
    const auto& p = metrics_["protocol"];
    const bool i3d = p.value("/detector/kind"_json_pointer, std::string()) == "torchscript";
    std::vector<Metric> m;
    m.push_back({"fvd", cat("FVD (", i3d ? "I3D" : "embedded synthetic-world detector", ")"),
                 "Fréchet distance of video features to the reference clips; lower is better.",
                 [](const json& j) { return at(j, {"fvd"}); }, 3, -1});
    if (has({"clip_score", "mean"}))
      m.push_back({"clip", "CLIP score", "100 x cosine of frame and prompt embeddings, frame-averaged; higher is better.",
                   [](const json& j) { return at(j, {"clip_score", "mean"}); }, 2, +1});
    if (has({"fidelity", "accuracy", "all"})) {
      m.push_back({"fidelity", "Caption fidelity: colour, shape and direction all right (%)",
                   "The rule-based analyser on the synthetic world's held-out prompts; higher is better.",
                   [](const json& j) { return at(j, {"fidelity", "accuracy", "all"}, 100); }, 1, +1});
      for (const char* a : {"colour", "shape", "direction"})
        m.push_back({cat("fidelity_", a), cat("Caption fidelity: ", a, " (%)"), "",
                     [a](const json& j) { return at(j, {"fidelity", "accuracy", a}, 100); }, 1, +1});
    }
    if (has({"frame_quality", "frame_fd"})) {
      m.push_back({"frame_fd", "Frame quality: Fréchet distance of frames to the high-quality stills",
                   "Lower means the frames look more like the clean image set than like the degraded training videos.",
                   [](const json& j) { return at(j, {"frame_quality", "frame_fd"}); }, 3, -1});
      m.push_back({"watermark", "Frame quality: watermarked frames (%)",
                   "Frames that carry the training videos' stock-footage banner; lower is better.",
                   [](const json& j) { return at(j, {"frame_quality", "watermark_rate"}, 100); }, 1, -1});
      m.push_back({"sharpness", "Frame quality: sharpness (mean squared Laplacian)",
                   "Compare with the stills' and the training videos' values in the reference table.",
                   [](const json& j) { return at(j, {"frame_quality", "sharpness"}); }, 0, 0});
    }
    return m;
  }

  bool has(std::initializer_list<const char*> path) const {
    for (const auto& j : jobs_)
      if (at(j.m, path)) return true;
    return false;
  }

  const Job* find(const std::string& method, int64_t steps) const {
    for (const auto& j : jobs_)
      if (j.method == method && j.steps == steps) return &j;
    return nullptr;
  }

  void head(std::ostringstream& html, std::ostringstream& md) const {
    const auto& p = metrics_["protocol"];
    const std::string rec = eval_entry_.value("reused_from", std::string("?"));
    html << "<!doctype html>\n<html><head><meta charset=utf-8><title>mcm report: " << esc(run_.filename().string())
         << "</title>\n<style>\nbody{font-family:system-ui,sans-serif;margin:24px;max-width:1200px;color:#222}\n"
            "table{border-collapse:collapse;margin:8px 0 18px}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}\n"
            "th{background:#f2f2f2}td.m,th.m{text-align:left}.note{color:#555;font-size:90%}\n"
            "img.plot{border:1px solid #ddd;margin:4px}img.grid{image-rendering:pixelated;border:1px solid #ddd}\n"
            "code{font-size:85%}a{color:inherit}\n</style></head><body>\n"
         << "<h1>mcm report</h1>\n<p>Run <code>" << esc(run_.string()) << "</code>; metrics from eval record <code>" << esc(rec)
         << "</code> (" << p.value("world_size", 0) << " rank(s), seed " << p.value("seed", 0) << "). Summary in Markdown: "
         << "<a href=\"summary.md\">summary.md</a>.</p>\n";
    md << "# mcm report\n\nRun `" << run_.string() << "`; metrics from eval record `" << rec << "`.\n\n";
  }

  void table(std::ostringstream& html, std::ostringstream& md, const Metric& m) const {
    // The best value per step count among the methods that have it.
    std::map<int64_t, double> best;
    for (int64_t s : steps_)
      for (const auto& meth : methods_)
        if (const Job* j = find(meth, s); j && m.better != 0)
          if (auto v = m.get(j->m)) {
            auto it = best.find(s);
            if (it == best.end() || (m.better < 0 ? *v < it->second : *v > it->second)) best[s] = *v;
          }
    html << "<h3 id=\"" << m.key << "\">" << esc(m.title) << "</h3>\n";
    if (!m.note.empty()) html << "<p class=note>" << esc(m.note) << "</p>\n";
    html << "<table><tr><th class=m>method</th>";
    md << "### " << m.title << "\n\n";
    if (!m.note.empty()) md << m.note << "\n\n";
    md << "| method |";
    for (int64_t s : steps_) html << "<th>" << s << (s == 1 ? " step" : " steps") << "</th>", md << " " << s << " |";
    html << "</tr>\n";
    md << "\n|---|";
    for (size_t i = 0; i < steps_.size(); ++i) md << "---|";
    md << "\n";
    for (const auto& meth : methods_) {
      html << "<tr><td class=m>" << esc(label_of(meth)) << "</td>";
      md << "| " << label_of(meth) << " |";
      for (int64_t s : steps_) {
        const Job* j = find(meth, s);
        std::optional<double> v = j ? m.get(j->m) : std::nullopt;
        if (!v) {
          html << "<td></td>";
          md << " |";
          continue;
        }
        const bool b = m.better != 0 && best.count(s) && *v == best.at(s) && methods_with(s) > 1;
        const std::string txt = fmt(*v, m.digits);
        html << "<td><a href=\"#lineage-" << j->name << "\" title=\"" << esc(j->name) << "\">" << (b ? "<b>" : "") << txt
             << (b ? "</b>" : "") << "</a></td>";
        md << " " << (b ? "**" : "") << txt << (b ? "**" : "") << " |";
      }
      html << "</tr>\n";
      md << "\n";
    }
    html << "</table>\n";
    md << "\n";
  }

  size_t methods_with(int64_t s) const {
    size_t n = 0;
    for (const auto& meth : methods_) n += find(meth, s) ? 1 : 0;
    return n;
  }

  void reference_quality(std::ostringstream& html, std::ostringstream& md) const {
    const json* r = nullptr;
    if (metrics_["protocol"].contains("frame_quality")) r = &metrics_["protocol"]["frame_quality"]["reference"];
    if (!r) return;
    auto row = [&](const char* name, const json& q) {
      const std::string fd = q.contains("frame_fd") ? fmt(q["frame_fd"].get<double>(), 3) : "0 (itself)";
      html << "<tr><td class=m>" << name << "</td><td>" << q.value("frames", 0) << "</td><td>" << fd << "</td><td>"
           << fmt(100 * q.value("watermark_rate", 0.0), 1) << "</td><td>" << fmt(q.value("sharpness", 0.0), 0) << "</td></tr>\n";
      md << "| " << name << " | " << q.value("frames", 0) << " | " << fd << " | " << fmt(100 * q.value("watermark_rate", 0.0), 1)
         << " | " << fmt(q.value("sharpness", 0.0), 0) << " |\n";
    };
    html << "<h3>Frame quality of the reference sets</h3>\n<p class=note>The same rules on the data itself: the training "
            "videos carry the watermark (the rate the rule finds on them is its recall) and the stills do not (its false-"
            "alarm rate).</p>\n<table><tr><th class=m>set</th><th>frames</th><th>frame FD to stills</th>"
            "<th>watermarked (%)</th><th>sharpness</th></tr>\n";
    md << "### Frame quality of the reference sets\n\n| set | frames | frame FD to stills | watermarked (%) | sharpness |\n"
          "|---|---|---|---|---|\n";
    if (r->contains("videos")) row("training videos (frames)", (*r)["videos"]);
    if (r->contains("stills")) row("high-quality stills", (*r)["stills"]);
    html << "</table>\n";
    md << "\n";
  }

  void paper(std::ostringstream& html, std::ostringstream& md) const {
    html << "<h2>For orientation: the paper's table</h2>\n<p class=note>MCM (arXiv 2406.06890), ModelScopeT2V distilled "
            "on WebVid, evaluated on WebVid-mini with I3D FVD and CLIPSIM x 100 at 1 / 2 / 4 / 8 steps. Different model, "
            "data and detector: compare orderings, not values.</p>\n<table><tr><th class=m>method</th>";
    md << "## For orientation: the paper's table\n\nMCM (arXiv 2406.06890), ModelScopeT2V on WebVid-mini, I3D FVD and "
          "CLIPSIM x 100 at 1 / 2 / 4 / 8 steps. Different model, data and detector: compare orderings, not values.\n\n"
          "| method | FVD 1 | FVD 2 | FVD 4 | FVD 8 | CLIPSIM 1 | CLIPSIM 2 | CLIPSIM 4 | CLIPSIM 8 |\n"
          "|---|---|---|---|---|---|---|---|---|\n";
    for (int s : {1, 2, 4, 8}) html << "<th>FVD " << s << "</th>";
    for (int s : {1, 2, 4, 8}) html << "<th>CLIPSIM " << s << "</th>";
    html << "</tr>\n";
    for (const auto& r : kPaper) {
      html << "<tr><td class=m>" << r.method << "</td>";
      md << "| " << r.method << " |";
      for (double v : r.fvd) html << "<td>" << fmt(v, 0) << "</td>", md << " " << fmt(v, 0) << " |";
      for (double v : r.clipsim) html << "<td>" << fmt(v, 2) << "</td>", md << " " << fmt(v, 2) << " |";
      html << "</tr>\n";
      md << "\n";
    }
    html << "</table>\n<p class=note>Frame quality in the paper (FID of frames to the target image set at 1 / 2 / 4 / 8 "
            "steps): LAION-aesthetics, two-stage baseline 110 / 119 / 115 / 122, MCM 82 / 69 / 73 / 76.</p>\n";
    md << "\nFrame quality in the paper (frame FID to LAION-aesthetics at 1 / 2 / 4 / 8 steps): two-stage 110 / 119 / 115 / "
          "122, MCM 82 / 69 / 73 / 76.\n\n";
  }

  void plots(std::ostringstream& html, std::ostringstream& md, const std::vector<Metric>& metrics) {
    html << "<h2>Plots</h2>\n";
    md << "## Plots\n\n";
    report::PlotOptions o;
    o.width = static_cast<int>(rc_.plot_width);
    o.height = static_cast<int>(rc_.plot_height);
    o.log2_x = true;
    o.x_label = "SAMPLING STEPS";
    for (const auto& m : metrics) {
      if (m.key.rfind("fidelity_", 0) == 0) continue;  // the per-attribute tables suffice
      std::vector<report::Series> ss;
      for (const auto& meth : methods_) {
        report::Series s{label_of(meth), {}, {}};
        for (int64_t st : steps_)
          if (const Job* j = find(meth, st))
            if (auto v = m.get(j->m)) s.x.push_back(static_cast<double>(st)), s.y.push_back(*v);
        ss.push_back(s);
      }
      o.title = m.title.substr(0, m.title.find(" ("));
      o.y_label = "";
      plot(html, md, cat(m.key, "_vs_steps.png"), ss, o, m.title + " against sampling steps");
    }
    // Training curves of every training stage that left metrics.jsonl.
    o.log2_x = false;
    o.x_label = "TRAINING STEP";
    if (stdfs::is_regular_file(run_ / "teacher" / "metrics.jsonl")) {
      o.title = "TEACHER LOSS";
      plot(html, md, "loss_teacher.png", {series_of("teacher", curve(run_ / "teacher" / "metrics.jsonl", "/loss"))}, o,
           "Teacher pretraining loss");
    }
    std::vector<report::Series> cd, adv;
    for (const auto& d : fs::list_dir(run_)) {
      const stdfs::path f = run_ / d / "metrics.jsonl";
      if (d.rfind("distill", 0) != 0 || !stdfs::is_regular_file(f)) continue;
      cd.push_back(series_of(d, curve(f, "/terms/l_cd")));
      if (auto g = curve(f, "/terms/g_adv"); !g.empty()) {
        adv.push_back(series_of(d + " G", g));
        adv.push_back(series_of(d + " D", curve(f, "/terms/d_hinge")));
      }
    }
    if (!cd.empty()) {
      o.title = "CONSISTENCY LOSS L_CD";
      plot(html, md, "loss_distill.png", cd, o, "Distillation: consistency loss per step (each distill folder)");
    }
    if (!adv.empty()) {
      o.title = "ADVERSARIAL LOSSES";
      plot(html, md, "loss_adversarial.png", adv, o, "Distillation: generator (G) and discriminator hinge (D) losses");
    }
  }

  void plot(std::ostringstream& html, std::ostringstream& md, const std::string& name, const std::vector<report::Series>& ss,
            const report::PlotOptions& o, const std::string& caption) {
    const auto png = report::line_plot(ss, o).png();
    put(out_ / "plots" / name, std::string(png.begin(), png.end()), "plot");
    html << "<figure style=\"display:inline-block;margin:6px\"><img class=plot src=\"plots/" << name << "\" width=" << o.width
         << " height=" << o.height << " alt=\"" << esc(caption) << "\"><figcaption class=note>" << esc(caption)
         << "</figcaption></figure>\n";
    md << "![" << caption << "](plots/" << name << ")\n\n";
  }

  // Per step count, one GIF: a row per method, a column per prompt (the same prompts and noise in
  // every row), method names on the left. Then each job's own preview.
  void grids(std::ostringstream& html, std::ostringstream& md) {
    html << "<h2>Samples</h2>\n<p class=note>Each row is a method, each column a prompt; every method starts from the same "
            "noise for the same prompt.</p>\n";
    md << "## Samples\n\n";
    for (int64_t s : steps_) {
      std::vector<std::pair<std::string, std::unique_ptr<io::VideoSampleReader>>> rows;
      for (const auto& meth : methods_)
        if (const Job* j = find(meth, s)) rows.emplace_back(label_of(meth), std::make_unique<io::VideoSampleReader>(run_ / j->file));
      const auto shape = rows.front().second->video_shape();
      const int t = static_cast<int>(shape[0]), h = static_cast<int>(shape[1]), w = static_cast<int>(shape[2]);
      int64_t cols = rc_.grid_prompts;
      for (auto& r : rows) cols = std::min<int64_t>(cols, static_cast<int64_t>(r.second->size()));
      for (auto& r : rows)
        require<DataError>(r.second->video_shape() == shape, "report: the ", s, "-step samples of ", rows.front().first, " and ",
                           r.first, " differ in shape");
      const int zoom = std::max(1, (64 + h - 1) / h), gap = 4, label_w = 8 * 24;
      const int cw = w * zoom, ch = h * zoom;
      const int width = (label_w + static_cast<int>(cols) * (cw + gap)) / 2 * 2 + 2,
                height = (static_cast<int>(rows.size()) * (ch + gap) + gap) / 2 * 2;
      std::vector<uint8_t> frames;
      std::vector<std::vector<uint8_t>> videos(rows.size() * static_cast<size_t>(cols));
      for (size_t r = 0; r < rows.size(); ++r)
        for (int64_t c = 0; c < cols; ++c) videos[r * static_cast<size_t>(cols) + static_cast<size_t>(c)] = rows[r].second->video(static_cast<hsize_t>(c));
      for (int f = 0; f < t; ++f) {
        report::Canvas cv(width, height);
        for (size_t r = 0; r < rows.size(); ++r) {
          const int y = gap + static_cast<int>(r) * (ch + gap);
          cv.text(4, y + ch / 2 - 5, rows[r].first, {0, 0, 0}, 2);
          for (int64_t c = 0; c < cols; ++c)
            cv.paste(videos[r * static_cast<size_t>(cols) + static_cast<size_t>(c)].data() + static_cast<size_t>(f) * h * w * 3, w, h,
                     label_w + static_cast<int>(c) * (cw + gap), y, zoom);
        }
        frames.insert(frames.end(), cv.rgb().begin(), cv.rgb().end());
      }
      const auto gif = io::encode_gif(frames.data(), t, width, height, 8);
      const std::string name = cat("steps_", s, ".gif");
      put(out_ / "grids" / name, std::string(gif.begin(), gif.end()), "grid");
      html << "<h3>" << s << (s == 1 ? " step" : " steps") << "</h3>\n<img class=grid src=\"grids/" << name << "\" width=" << width
           << " height=" << height << " alt=\"samples at " << s << " steps\">\n<ol class=note>";
      md << "### " << s << (s == 1 ? " step" : " steps") << "\n\n![samples at " << s << " steps](grids/" << name << ")\n\n";
      for (int64_t c = 0; c < cols; ++c) {
        const auto p = rows.front().second->prompt(static_cast<hsize_t>(c));
        html << "<li>" << esc(p) << "</li>";
        md << c + 1 << ". " << p << "\n";
      }
      html << "</ol>\n";
      md << "\n";
    }
  }

  // For each job: the eval record, the sample file, the record that wrote it, the model and the
  // record that trained the model.
  void lineage(std::ostringstream& html, std::ostringstream& md) const {
    const std::string eval_rec = eval_entry_.value("reused_from", std::string("?"));
    html << "<h2>Lineage</h2>\n<p class=note>Every number above comes from <code>eval/metrics.json</code> "
         << "(checksum <code>" << esc(eval_entry_.value("checksum", std::string("?"))) << "</code>, eval record <code>"
         << esc(eval_rec) << "</code>), computed from these files. <code>mcm manifest show RUN FILE</code> prints any of them "
            "in full.</p>\n<table><tr><th class=m>job</th><th class=m>sample file</th><th class=m>checksum</th>"
            "<th class=m>sampled by</th><th class=m>model</th><th class=m>model trained by</th></tr>\n";
    md << "## Lineage\n\nFrom `eval/metrics.json` (eval record `" << eval_rec << "`).\n\n"
       << "| job | sample file | checksum | sampled by | model | model trained by |\n|---|---|---|---|---|---|\n";
    for (const auto& j : jobs_) {
      json e;
      if (auto it = samples_.find(j.file); it != samples_.end()) e = it->second;
      const std::string sum = e.value("checksum", std::string("not in the manifest")), by = e.value("reused_from", std::string("?"));
      std::string model = "?", trained = "?";
      if (e.contains("input") && e["input"].contains("path")) {
        model = e["input"]["path"].get<std::string>();
        std::error_code ec;
        auto rel = stdfs::relative(model, run_, ec).generic_string();
        if (!ec && rel.rfind("..", 0) != 0) model = rel;
        trained = producer(model);
      }
      html << "<tr id=\"lineage-" << esc(j.name) << "\"><td class=m>" << esc(j.name) << "</td><td class=m><code>" << esc(j.file)
           << "</code></td><td class=m><code>" << esc(sum) << "</code></td><td class=m><code>" << esc(by)
           << "</code></td><td class=m><code>" << esc(model) << "</code></td><td class=m><code>" << esc(trained) << "</code></td></tr>\n";
      md << "| " << j.name << " | `" << j.file << "` | `" << sum << "` | `" << by << "` | `" << model << "` | `" << trained << "` |\n";
    }
    html << "</table>\n";
    md << "\n";
  }

  // The latest complete record with an output under `folder` (relative to the run).
  std::string producer(const std::string& folder) const {
    std::string found = "external (no record in this run)";
    for (const auto& r : manifest_.value("records", json::array())) {
      if (r.value("status", std::string()) != "complete") continue;
      for (const auto& o : r.value("outputs", json::array()))
        if (o.value("path", std::string()).rfind(folder + "/", 0) == 0) {
          found = cat(r.value("stage", std::string()), " ", r.value("id", std::string()));
          break;
        }
    }
    return found;
  }

  void protocol(std::ostringstream& html, std::ostringstream& md) const {
    const std::string p = metrics_["protocol"].dump(1);
    html << "<h2>Evaluation protocol</h2>\n<pre class=note>" << esc(p) << "</pre>\n";
    md << "## Evaluation protocol\n\n```json\n" << p << "\n```\n";
  }

  void put(const stdfs::path& file, const std::string& bytes, const char* kind) {
    fs::write_atomic(file, bytes);
    stage_.record_output(file, {{"kind", kind}});
  }

  stdfs::path run_, out_;
  const ReportSection& rc_;
  StageRun& stage_;
  json metrics_, manifest_, eval_entry_;
  std::map<std::string, json> samples_;
  std::vector<Job> jobs_;
  std::vector<std::string> methods_;
  std::set<int64_t> steps_;
};

}  // namespace

int run_report(const config::Config& cfg, const dist::DistContext& ctx) {
  const auto& rc = cfg.section<ReportSection>();
  const stdfs::path run_dir = cfg.run.dir;
  StageRun stage("report", kReportCodeVersion, cfg, ctx, {"report"});
  if (ctx.is_root()) {
    // The other ranks wait in finish(); an error here ends every rank through main's abort.
    ReportWriter w(run_dir, rc, stage);
    w.load();
    w.write();
    log::info("report: ", (run_dir / "report" / "index.html").string());
  }
  return stage.finish({}, json::object()) ? 0 : 1;
}

MCM_STAGE("report", 70, run_report, "report/index.html and summary.md: tables, the paper's table, plots, sample grids, lineage");

}  // namespace mcm::stages

// FFmpeg decode of a sampling window. One demuxing pass lists the video packets: the exact length
// (the container's nb_frames also counts an edit list's pre-roll, duration x fps is an estimate)
// and every frame's timestamp, for about 2 ms per 800 packets and no decoding. The demuxer then
// seeks to the key frame before the window and the decoder runs forward from there, skipping
// frames nothing needs. Frames are cropped by offsetting plane pointers and scaled with swscale
// straight into the output buffer.
#include "io/media_decode.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>

extern "C" {
#include <libavutil/pixdesc.h>
}

#include "core/rng.hpp"
#include "io/ffmpeg_util.hpp"

namespace mcm::io {

const char* to_string(DecodeMethod m) {
  switch (m) {
    case DecodeMethod::from_start: return "from_start";
    case DecodeMethod::seek: return "seek";
    case DecodeMethod::single_pass: return "single_pass";
  }
  return "?";
}

CropRect choose_crop(int sw, int sh, int ow, int oh, CropMode mode, double scale_min, uint64_t seed) {
  CropRect r;
  if (mode == CropMode::random_resized) {
    // The project's RNG scheme, not <random>'s distributions (their results differ between
    // standard libraries): the same crop from the same seed on every build.
    rng::Stream draw(rng::key(seed, "decode", 0, "crop"));
    double area = static_cast<double>(sw) * sh;
    const double lr0 = std::log(3.0 / 4.0), lr1 = std::log(4.0 / 3.0);
    for (int attempt = 0; attempt < 10; ++attempt) {
      double target = area * (scale_min + (1.0 - scale_min) * draw.uniform());
      double ratio = std::exp(lr0 + (lr1 - lr0) * draw.uniform());
      int w = static_cast<int>(std::lround(std::sqrt(target * ratio)));
      int h = static_cast<int>(std::lround(std::sqrt(target / ratio)));
      if (w > 0 && h > 0 && w <= sw && h <= sh) {
        r.w = w; r.h = h;
        r.x = static_cast<int>(draw.uniform() * (sw - w + 1));
        r.y = static_cast<int>(draw.uniform() * (sh - h + 1));
        r.x = std::min(r.x, sw - w); r.y = std::min(r.y, sh - h);
        return r;
      }
    }
  }
  // Center: the largest window with the output's aspect ratio (= resize shorter side, crop).
  double out_aspect = static_cast<double>(ow) / oh;
  if (static_cast<double>(sw) / sh > out_aspect) {
    r.h = sh;
    r.w = std::max(1, static_cast<int>(std::lround(sh * out_aspect)));
  } else {
    r.w = sw;
    r.h = std::max(1, static_cast<int>(std::lround(sw / out_aspect)));
  }
  r.x = (sw - r.w) / 2;
  r.y = (sh - r.h) / 2;
  return r;
}

namespace {

// Note [frame identity]
// Decoding from the start numbers frames in the order the decoder outputs them. Each packet the
// demuxer does not mark as discarded (an edit list's pre-roll) decodes to one frame, and frames
// come out in presentation order, so frame i is the packet with the i-th smallest pts: for a
// constant rate that is round((pts - start_pts) * fps), and the rank stays right for variable
// rates and edit lists. The demuxing pass collects these pts; the seek path names every decoded
// frame by the rank of its pts. A stream that does not fit this picture (a packet without pts,
// two frames with one pts, a first packet that is not a key frame, a frame whose pts is not in
// the list, a frame flagged corrupt, a decode error, a window left incomplete) is decoded from
// the start instead, so seeking never changes which frames come back, only what they cost (one
// difference: damage before the key frame is never seen, so such a clip is kept where decoding
// from the start would have refused it).
// A key frame K can start the decode when it is shown at or before the window's first frame:
// frames after K in presentation order never reference frames before it (closed GOPs, and the
// recovery point of an open GOP). Packets after K in decode order but shown before it (the
// leading pictures of an open GOP) are not sent; frames outside the sample that no other frame
// references are skipped by the decoder (AVDISCARD_NONREF).

// Crops by offsetting plane pointers. Chroma-subsampled formats need offsets on the chroma grid.
void crop_planes(const AVFrame* f, const CropRect& c, const uint8_t* planes[4], int strides[4]) {
  const AVPixFmtDescriptor* d = av_pix_fmt_desc_get(static_cast<AVPixelFormat>(f->format));
  for (int i = 0; i < 4; ++i) { planes[i] = f->data[i]; strides[i] = f->linesize[i]; }
  if (!d || (d->flags & AV_PIX_FMT_FLAG_PAL) || (d->flags & AV_PIX_FMT_FLAG_BITSTREAM)) return;
  int max_step[4];
  av_image_fill_max_pixsteps(max_step, nullptr, d);
  for (int i = 0; i < 4 && f->data[i]; ++i) {
    bool chroma = (i == 1 || i == 2);
    int sx = chroma ? d->log2_chroma_w : 0, sy = chroma ? d->log2_chroma_h : 0;
    planes[i] = f->data[i] + static_cast<ptrdiff_t>(c.y >> sy) * f->linesize[i] + static_cast<ptrdiff_t>(c.x >> sx) * max_step[i];
  }
}

bool damaged(const AVFrame* f) { return (f->flags & AV_FRAME_FLAG_CORRUPT) || f->decode_error_flags; }
int64_t frame_pts(const AVFrame* f) { return f->pts != AV_NOPTS_VALUE ? f->pts : f->best_effort_timestamp; }

/// One video packet as the demuxer lists it (the payload is not kept).
struct PacketInfo {
  int64_t pts = AV_NOPTS_VALUE, dts = AV_NOPTS_VALUE, pos = -1;
  int size = 0;
  bool key = false, discard = false;
  bool same(const AVPacket* p) const { return p->pts == pts && p->pos == pos && p->size == size; }
};

/// The stream's packets in decode order and its frames' timestamps in presentation order.
struct Timeline {
  std::vector<PacketInfo> packets;
  std::vector<int64_t> frame_pts;  ///< frame i has pts frame_pts[i] (Note [frame identity]); empty if not timed
  bool timed = false;
  int64_t frames = -1;             ///< exact when timed, else the container's count; -1 unknown
  int64_t key_frames = 0;

  /// Frame index of a timestamp, -1 if no frame has it.
  int64_t frame_of(int64_t pts) const {
    auto it = std::lower_bound(frame_pts.begin(), frame_pts.end(), pts);
    return it != frame_pts.end() && *it == pts ? static_cast<int64_t>(it - frame_pts.begin()) : -1;
  }
};

/// The seek path met a stream that Note [frame identity] does not cover; decode from the start.
struct SeekAbandoned {};

/// What to do with a packet: drop it, decode it, decode it only if other frames reference it,
/// decode it and then drain the decoder (the last one needed), or stop reading.
enum class Feed { skip, decode, decode_if_referenced, decode_then_drain, stop };

/// A demuxer over bytes in memory and (optionally) a decoder for its best video stream.
class Decoder {
 public:
  Decoder(const uint8_t* data, size_t size, std::string name, int threads, bool with_codec) : name_(std::move(name)) {
    av::quiet_logs();
    if (size == 0) throw DataError(cat("decode ", name_, ": empty file (0 bytes)"));
    mem_.data = data;
    mem_.size = size;
    avio_ = mem_.make_avio();
    AVFormatContext* raw = avformat_alloc_context();
    if (!raw) throw IoError("avformat_alloc_context: out of memory");
    raw->pb = avio_.get();
    raw->flags |= AVFMT_FLAG_CUSTOM_IO;
    int rc = avformat_open_input(&raw, nullptr, nullptr, nullptr);  // frees raw on failure
    if (rc < 0) throw DataError(cat("decode ", name_, ": open container: ", av::error_text(rc)));
    fmt_.reset(raw);
    av::check(avformat_find_stream_info(fmt_.get(), nullptr), cat("decode ", name_, ": read stream info"));
    const AVCodec* dec = nullptr;
    stream_ = av_find_best_stream(fmt_.get(), AVMEDIA_TYPE_VIDEO, -1, -1, &dec, 0);
    if (stream_ < 0 || !dec) throw DataError(cat("decode ", name_, ": no decodable video stream"));
    if (!with_codec) return;
    codec_.reset(avcodec_alloc_context3(dec));
    if (!codec_) throw IoError("avcodec_alloc_context3: out of memory");
    av::check(avcodec_parameters_to_context(codec_.get(), st()->codecpar), cat("decode ", name_, ": codec parameters"));
    codec_->thread_count = threads;
    codec_->err_recognition |= AV_EF_EXPLODE;  // refuse damaged data instead of concealing it
    av::check(avcodec_open2(codec_.get(), dec, nullptr), cat("decode ", name_, ": open decoder ", dec->name));
  }

  AVStream* st() const { return fmt_->streams[stream_]; }
  AVFormatContext* fmt() const { return fmt_.get(); }
  const AVCodecContext* codec() const { return codec_.get(); }
  int64_t decoded() const { return decoded_; }

  /// Reads every packet header of the stream once (no decoding); leaves the demuxer at the end.
  Timeline scan() {
    Timeline t;
    auto pkt = av::make_packet();
    for (int64_t n = 0;;) {
      int rc = av_read_frame(fmt_.get(), pkt.get());
      if (rc == AVERROR_EOF) break;
      if (rc < 0) throw DataError(cat("decode ", name_, ": read packet ", n, ": ", av::error_text(rc)));
      if (pkt->stream_index == stream_) {
        if (pkt->flags & AV_PKT_FLAG_CORRUPT) throw DataError(cat("decode ", name_, ": packet ", n, " is truncated or corrupt"));
        t.packets.push_back({pkt->pts, pkt->dts, pkt->pos, pkt->size, (pkt->flags & AV_PKT_FLAG_KEY) != 0, (pkt->flags & AV_PKT_FLAG_DISCARD) != 0});
        t.key_frames += t.packets.back().key;
        ++n;
      }
      av_packet_unref(pkt.get());
    }
    t.timed = !t.packets.empty() && t.packets.front().key;
    for (const auto& p : t.packets) {
      if (p.discard) continue;
      if (p.pts == AV_NOPTS_VALUE) t.timed = false;
      t.frame_pts.push_back(p.pts);
    }
    std::sort(t.frame_pts.begin(), t.frame_pts.end());
    if (std::adjacent_find(t.frame_pts.begin(), t.frame_pts.end()) != t.frame_pts.end()) t.timed = false;
    if (t.timed) {
      t.frames = static_cast<int64_t>(t.frame_pts.size());
    } else {
      t.frame_pts.clear();
      t.frames = st()->nb_frames > 0 ? st()->nb_frames : -1;
    }
    return t;
  }

  /// Positions the demuxer at or before `pts` (a key frame); false if the demuxer cannot seek.
  bool seek(int64_t pts) {
    if (av_seek_frame(fmt_.get(), stream_, pts, AVSEEK_FLAG_BACKWARD) < 0) return false;
    avcodec_flush_buffers(codec_.get());
    return true;
  }

  /// Feeds packets as decide(packet) says and hands each frame to on_frame(frame, n) (n counts
  /// this call's frames) until on_frame returns false or the stream ends.
  template <class P, class F>
  void run(P&& decide, F&& on_frame) {
    auto pkt = av::make_packet();
    auto frame = av::make_frame();
    int64_t index = 0;
    bool draining = false;
    for (;;) {
      if (!draining) {
        int rc = av_read_frame(fmt_.get(), pkt.get());
        if (rc == AVERROR_EOF) {
          draining = true;
          av::check(avcodec_send_packet(codec_.get(), nullptr), cat("decode ", name_, ": flush"));
        } else if (rc < 0) {
          throw DataError(cat("decode ", name_, ": read packet: ", av::error_text(rc)));
        } else {
          Feed feed = pkt->stream_index == stream_ ? decide(pkt.get()) : Feed::skip;
          if (feed == Feed::stop) return;
          if (feed == Feed::skip) { av_packet_unref(pkt.get()); continue; }
          codec_->skip_frame = feed == Feed::decode_if_referenced ? AVDISCARD_NONREF : AVDISCARD_DEFAULT;
          rc = avcodec_send_packet(codec_.get(), pkt.get());
          av_packet_unref(pkt.get());
          if (rc < 0 && rc != AVERROR(EAGAIN)) throw DataError(cat("decode ", name_, ": frame ", index, ": ", av::error_text(rc)));
          if (feed == Feed::decode_then_drain) {
            draining = true;
            av::check(avcodec_send_packet(codec_.get(), nullptr), cat("decode ", name_, ": flush"));
          }
        }
      }
      for (;;) {
        int rc = avcodec_receive_frame(codec_.get(), frame.get());
        if (rc == AVERROR(EAGAIN)) break;
        if (rc == AVERROR_EOF) return;
        if (rc < 0) throw DataError(cat("decode ", name_, ": frame ", index, ": ", av::error_text(rc)));
        ++decoded_;
        bool more = on_frame(frame.get(), index++);
        av_frame_unref(frame.get());
        if (!more) return;
      }
    }
  }

 private:
  std::string name_;
  av::MemoryReader mem_;
  av::AvioPtr avio_;
  av::InputPtr fmt_;
  av::CodecPtr codec_;
  int stream_ = -1;
  int64_t decoded_ = 0;
};

/// Crops and scales decoded frames into RGB24 of the output size; the crop is chosen from the
/// first frame written, and every later one must have its size.
class FrameWriter {
 public:
  FrameWriter(const DecodeOptions& opt, const std::string& name, DecodedClip& out) : opt_(opt), name_(name), out_(out) {}
  size_t frame_bytes() const { return static_cast<size_t>(opt_.width) * opt_.height * 3; }
  uint8_t* slot(int64_t k) { return out_.rgb.data() + static_cast<size_t>(k) * frame_bytes(); }

  void write(const AVFrame* f, int64_t index, uint8_t* dst) {
    if (!sws_) {
      out_.source_width = f->width;
      out_.source_height = f->height;
      out_.crop = choose_crop(f->width, f->height, opt_.width, opt_.height, opt_.crop, opt_.scale_min, opt_.seed);
      const AVPixFmtDescriptor* desc = av_pix_fmt_desc_get(static_cast<AVPixelFormat>(f->format));
      if (desc) {  // keep the crop origin on the chroma grid
        out_.crop.x &= ~((1 << desc->log2_chroma_w) - 1);
        out_.crop.y &= ~((1 << desc->log2_chroma_h) - 1);
      }
      sws_.reset(sws_getContext(out_.crop.w, out_.crop.h, static_cast<AVPixelFormat>(f->format), opt_.width, opt_.height,
                                AV_PIX_FMT_RGB24, SWS_BICUBIC, nullptr, nullptr, nullptr));
      if (!sws_)
        throw DataError(cat("decode ", name_, ": swscale cannot convert ", av_get_pix_fmt_name(static_cast<AVPixelFormat>(f->format))));
    }
    if (f->width != out_.source_width || f->height != out_.source_height)
      throw DataError(cat("decode ", name_, ": frame ", index, " changes size to ", f->width, "x", f->height));
    const uint8_t* planes[4];
    int strides[4];
    crop_planes(f, out_.crop, planes, strides);
    uint8_t* dsts[4] = {dst, nullptr, nullptr, nullptr};
    int dst_stride[4] = {opt_.width * 3, 0, 0, 0};
    sws_scale(sws_.get(), planes, strides, 0, out_.crop.h, dsts, dst_stride);
  }

 private:
  const DecodeOptions& opt_;
  const std::string& name_;
  DecodedClip& out_;
  av::SwsPtr sws_;
};

/// The window's geometry: `frames` samples `stride` apart from `start`.
struct Window {
  int64_t start = 0, frames = 1, stride = 1;
  int64_t span() const { return (frames - 1) * stride + 1; }
  int64_t last() const { return start + span() - 1; }
  bool wanted(int64_t i) const { return i >= start && i <= last() && (i - start) % stride == 0; }
};

/// Decodes from the demuxer's current position (the first packet), numbering frames in output
/// order, the reference behaviour. `first`: the packet the demuxer must deliver first (after a
/// rewind), else SeekAbandoned. Returns the frames taken (fewer than w.frames at the end).
int64_t decode_from_start(Decoder& d, const Window& w, FrameWriter& fw, DecodedClip& out, const std::string& name,
                          const PacketInfo* first) {
  int64_t taken = 0;
  bool checked = first == nullptr;
  out.frame_indices.clear();
  d.run(
      [&](const AVPacket* p) {
        if (!checked && !first->same(p)) throw SeekAbandoned{};
        checked = true;
        return Feed::decode;
      },
      [&](AVFrame* f, int64_t i) {
        if (damaged(f)) throw DataError(cat("decode ", name, ": frame ", i, " is corrupt"));
        if (!w.wanted(i)) return true;
        fw.write(f, i, fw.slot(taken));
        out.frame_indices.push_back(i);
        return ++taken < w.frames;
      });
  return taken;
}

/// Seeks to a key frame shown at or before the window, then decodes forward naming frames by
/// their pts (Note [frame identity]). Throws SeekAbandoned when the stream does not allow it.
void decode_seeking(Decoder& d, const Timeline& t, const Window& w, FrameWriter& fw, DecodedClip& out) {
  // Key frames that can start the decode, in decode order; a discarded key frame of the pre-roll
  // (before the first kept packet) comes before every frame.
  std::vector<const PacketInfo*> keys;
  bool preroll = true;
  for (const auto& p : t.packets) {
    preroll = preroll && p.discard;
    if (!p.key) continue;
    int64_t i = p.discard ? -1 : t.frame_of(p.pts);
    if ((p.discard && preroll) || (i >= 0 && i <= w.start)) keys.push_back(&p);
  }
  // Demuxers read the target differently (mov and matroska as a pts, mpegts's binary search as
  // a dts) and may land past it: then ask again with the key frame's dts, then the key frame before.
  std::vector<int64_t> targets;
  for (size_t j = keys.size(); j-- > 0 && targets.size() < 4;) {
    targets.push_back(keys[j]->pts);
    if (keys[j]->dts != AV_NOPTS_VALUE && keys[j]->dts < keys[j]->pts) targets.push_back(keys[j]->dts);
  }
  for (size_t attempt = 0; attempt < targets.size(); ++attempt) {
    if (!d.seek(targets[attempt])) throw SeekAbandoned{};
    int64_t k0 = 0, sent = 0, got = 0;
    bool started = false, overshot = false;
    std::vector<char> have(static_cast<size_t>(w.frames), 0);
    d.run(
        [&](const AVPacket* p) {
          const bool discard = p->flags & AV_PKT_FLAG_DISCARD;
          if (!started) {  // up to the first key frame: packets from a position without one
            if (!(p->flags & AV_PKT_FLAG_KEY)) return Feed::skip;
            k0 = discard ? -1 : t.frame_of(p->pts);
            if (!discard && (k0 < 0 || k0 > w.start)) { overshot = true; return Feed::stop; }
            started = true;
          }
          if (discard) return Feed::decode_if_referenced;  // pre-roll: the decoder drops its frames
          int64_t i = t.frame_of(p->pts);
          if (i < 0) throw SeekAbandoned{};
          if (i < k0) return Feed::skip;  // a leading picture: shown before the key frame
          if (!w.wanted(i)) return Feed::decode_if_referenced;
          return ++sent == w.frames ? Feed::decode_then_drain : Feed::decode;
        },
        [&](AVFrame* f, int64_t) {
          if (damaged(f)) throw SeekAbandoned{};
          int64_t i = t.frame_of(frame_pts(f));
          if (i < 0) throw SeekAbandoned{};
          if (!w.wanted(i)) return true;
          int64_t k = (i - w.start) / w.stride;
          if (have[static_cast<size_t>(k)]) throw SeekAbandoned{};
          have[static_cast<size_t>(k)] = 1;
          fw.write(f, i, fw.slot(k));
          return ++got < w.frames;
        });
    if (overshot) continue;
    if (got < w.frames) throw SeekAbandoned{};
    out.frame_indices.clear();
    for (int64_t k = 0; k < w.frames; ++k) out.frame_indices.push_back(w.start + k * w.stride);
    return;
  }
  throw SeekAbandoned{};
}

/// For a stream whose length is unknown without decoding it: one pass that keeps the last
/// `window` frames (converted) in a ring and picks the start by reservoir sampling, uniform over
/// [0, length - window] once the stream ends. Returns the number of frames in the stream.
int64_t decode_single_pass(Decoder& d, Window w, int64_t window, uint64_t seed, FrameWriter& fw, DecodedClip& out,
                           const std::string& name) {
  const size_t bytes = fw.frame_bytes();
  std::vector<uint8_t> ring(static_cast<size_t>(window) * bytes);
  rng::Stream draw(rng::key(seed, "decode", 0, "reservoir"));
  d.run([](const AVPacket*) { return Feed::decode; },
        [&](AVFrame* f, int64_t i) {
          if (damaged(f)) throw DataError(cat("decode ", name, ": frame ", i, " is corrupt"));
          fw.write(f, i, ring.data() + static_cast<size_t>(i % window) * bytes);
          int64_t s = i - window + 1;  // the window starting at s now fits
          if (s >= 0 && (s == 0 || draw.uniform_int(0, s) == 0)) {
            w.start = s;
            out.frame_indices.clear();
            for (int64_t k = 0; k < w.frames; ++k) {
              int64_t j = s + k * w.stride;
              std::memcpy(fw.slot(k), ring.data() + static_cast<size_t>(j % window) * bytes, bytes);
              out.frame_indices.push_back(j);
            }
          }
          return true;
        });
  return d.decoded();
}

}  // namespace

DecodedClip decode_clip(const uint8_t* data, size_t size, const std::string& name, const DecodeOptions& opt) {
  require<DataError>(opt.frames >= 1 && opt.stride >= 1 && opt.width > 0 && opt.height > 0, "decode ", name,
                     ": bad options");
  Window w{opt.start, opt.frames, opt.stride};
  const int64_t span = w.span(), window = std::max(span, opt.window), need = std::max(window, opt.min_frames);
  auto too_short = [&](int64_t total) {
    return ClipTooShort(cat("decode ", name, ": ", total, " frames, the window needs ", need, " (", opt.frames,
                            " frames at stride ", opt.stride, ")"));
  };
  auto d = std::make_unique<Decoder>(data, size, name, opt.threads, true);
  DecodedClip out;
  out.width = opt.width;
  out.height = opt.height;
  out.frames = static_cast<int>(opt.frames);
  out.source_width = d->codec()->width;
  out.source_height = d->codec()->height;
  AVRational r = d->st()->avg_frame_rate.num ? d->st()->avg_frame_rate : d->st()->r_frame_rate;
  out.fps = r.den ? av_q2d(r) : 0.0;
  out.rgb.resize(static_cast<size_t>(opt.frames) * opt.width * opt.height * 3);
  FrameWriter fw(opt, name, out);
  int64_t spent = 0;  // frames decoded by decoders already replaced
  auto reopen = [&] {
    spent += d->decoded();
    d = std::make_unique<Decoder>(data, size, name, opt.threads, true);
  };
  auto finish = [&](DecodeMethod m) {
    out.method = m;
    out.decoded_frames = spent + d->decoded();
    return std::move(out);
  };

  // A window at frame 0 with no length to check: nothing to skip and nothing to count (stills).
  if (opt.start == 0 && need == span) {
    out.source_frames = std::max<int64_t>(d->st()->nb_frames, 0);
    int64_t taken = decode_from_start(*d, w, fw, out, name, nullptr);
    if (taken < w.frames) throw too_short(d->decoded());
    return finish(DecodeMethod::from_start);
  }

  Timeline t = d->scan();
  if (t.frames < 0) {  // no timestamps, no frame count: the length is known only after decoding
    reopen();
    if (opt.start < 0) {
      int64_t total = decode_single_pass(*d, w, window, opt.seed, fw, out, name);
      out.source_frames = total;
      if (total < need) throw too_short(total);
      return finish(DecodeMethod::single_pass);
    }
    if (decode_from_start(*d, w, fw, out, name, nullptr) < w.frames) throw too_short(d->decoded());
    return finish(DecodeMethod::from_start);
  }
  out.source_frames = t.frames;
  if (t.frames < need) throw too_short(t.frames);
  if (w.start < 0) {
    w.start = rng::Stream(rng::key(opt.seed, "decode", 0, "start")).uniform_int(0, t.frames - window);
  }
  require<DataError>(w.start + span <= t.frames, "decode ", name, ": start ", w.start, " + window ", span, " exceeds ",
                     t.frames, " frames");

  auto short_of_listed = [&] {
    return ClipTooShort(cat("decode ", name, ": the container lists ", t.frames, " frames but only ", d->decoded(),
                            " decode; the window needs ", w.start + span));
  };
  if (opt.seek && t.timed) {
    try {
      decode_seeking(*d, t, w, fw, out);
      return finish(DecodeMethod::seek);
    } catch (const SeekAbandoned&) {
    } catch (const DataError&) {  // decode errors: decoding from the start decides
    }
    reopen();
  } else {
    // Back to the first packet for the reference decode; a demuxer that cannot go back is reopened.
    bool rewound = t.timed && av_seek_frame(d->fmt(), d->st()->index, t.packets.front().pts, AVSEEK_FLAG_BACKWARD) >= 0;
    if (rewound) {
      try {
        int64_t taken = decode_from_start(*d, w, fw, out, name, &t.packets.front());
        if (taken < w.frames) throw short_of_listed();
        return finish(DecodeMethod::from_start);
      } catch (const SeekAbandoned&) {
      }
    }
    reopen();
  }
  int64_t taken = decode_from_start(*d, w, fw, out, name, nullptr);
  if (taken < w.frames) throw short_of_listed();
  return finish(DecodeMethod::from_start);
}

MediaInfo probe_media(const uint8_t* data, size_t size, const std::string& name) {
  Decoder d(data, size, name, 1, false);
  Timeline t = d.scan();
  const AVStream* st = d.st();
  MediaInfo m;
  m.frames = std::max<int64_t>(t.frames, 0);
  m.timed = t.timed;
  m.key_frames = t.key_frames;
  m.width = st->codecpar->width;
  m.height = st->codecpar->height;
  AVRational r = st->avg_frame_rate.num ? st->avg_frame_rate : st->r_frame_rate;
  m.fps = r.den ? av_q2d(r) : 0.0;
  if (st->duration != AV_NOPTS_VALUE) m.duration = static_cast<double>(st->duration) * av_q2d(st->time_base);
  else if (d.fmt()->duration != AV_NOPTS_VALUE && d.fmt()->duration_estimation_method != AVFMT_DURATION_FROM_BITRATE)
    m.duration = static_cast<double>(d.fmt()->duration) / AV_TIME_BASE;
  m.codec = avcodec_get_name(st->codecpar->codec_id);
  m.container = d.fmt()->iformat->name;
  return m;
}

}  // namespace mcm::io

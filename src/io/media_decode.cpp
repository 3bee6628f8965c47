// FFmpeg decode loop: demux from memory, decode, keep only the wanted frames, crop by offsetting
// the plane pointers, scale with swscale straight into the output buffer.
#include "io/media_decode.hpp"

#include <algorithm>
#include <cmath>
#include <random>

extern "C" {
#include <libavutil/pixdesc.h>
}

#include "io/ffmpeg_util.hpp"

namespace mcm::io {

CropRect choose_crop(int sw, int sh, int ow, int oh, CropMode mode, double scale_min, uint64_t seed) {
  CropRect r;
  if (mode == CropMode::random_resized) {
    std::mt19937_64 rng(seed ^ 0x9e3779b97f4a7c15ULL);
    std::uniform_real_distribution<double> u01(0.0, 1.0);
    double area = static_cast<double>(sw) * sh;
    const double lr0 = std::log(3.0 / 4.0), lr1 = std::log(4.0 / 3.0);
    for (int attempt = 0; attempt < 10; ++attempt) {
      double target = area * (scale_min + (1.0 - scale_min) * u01(rng));
      double ratio = std::exp(lr0 + (lr1 - lr0) * u01(rng));
      int w = static_cast<int>(std::lround(std::sqrt(target * ratio)));
      int h = static_cast<int>(std::lround(std::sqrt(target / ratio)));
      if (w > 0 && h > 0 && w <= sw && h <= sh) {
        r.w = w; r.h = h;
        r.x = static_cast<int>(u01(rng) * (sw - w + 1));
        r.y = static_cast<int>(u01(rng) * (sh - h + 1));
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

struct Decoder {
  av::MemoryReader mem;
  av::AvioPtr avio;
  av::InputPtr fmt;
  av::CodecPtr codec;
  int stream = -1;
  std::string name;

  Decoder(const uint8_t* data, size_t size, std::string nm, int threads) : name(std::move(nm)) {
    av::quiet_logs();
    if (size == 0) throw DataError(cat("decode ", name, ": empty file (0 bytes)"));
    mem.data = data;
    mem.size = size;
    avio = mem.make_avio();
    AVFormatContext* raw = avformat_alloc_context();
    if (!raw) throw IoError("avformat_alloc_context: out of memory");
    raw->pb = avio.get();
    raw->flags |= AVFMT_FLAG_CUSTOM_IO;
    int rc = avformat_open_input(&raw, nullptr, nullptr, nullptr);  // frees raw on failure
    if (rc < 0) throw DataError(cat("decode ", name, ": open container: ", av::error_text(rc)));
    fmt.reset(raw);
    av::check(avformat_find_stream_info(fmt.get(), nullptr), cat("decode ", name, ": read stream info"));
    const AVCodec* dec = nullptr;
    stream = av_find_best_stream(fmt.get(), AVMEDIA_TYPE_VIDEO, -1, -1, &dec, 0);
    if (stream < 0 || !dec) throw DataError(cat("decode ", name, ": no decodable video stream"));
    codec.reset(avcodec_alloc_context3(dec));
    if (!codec) throw IoError("avcodec_alloc_context3: out of memory");
    av::check(avcodec_parameters_to_context(codec.get(), fmt->streams[stream]->codecpar), cat("decode ", name, ": codec parameters"));
    codec->thread_count = threads;
    codec->err_recognition |= AV_EF_EXPLODE;  // refuse damaged data instead of concealing it
    av::check(avcodec_open2(codec.get(), dec, nullptr), cat("decode ", name, ": open decoder ", dec->name));
  }

  // Calls on_frame(frame, index) for each decoded frame until it returns false or the stream ends.
  template <class F>
  void run(F&& on_frame) {
    auto pkt = av::make_packet();
    auto frame = av::make_frame();
    int64_t index = 0;
    bool flushing = false;
    for (;;) {
      if (!flushing) {
        int rc = av_read_frame(fmt.get(), pkt.get());
        if (rc == AVERROR_EOF) {
          flushing = true;
          av::check(avcodec_send_packet(codec.get(), nullptr), cat("decode ", name, ": flush"));
        } else if (rc < 0) {
          throw DataError(cat("decode ", name, ": read packet: ", av::error_text(rc)));
        } else {
          if (pkt->stream_index != stream) { av_packet_unref(pkt.get()); continue; }
          rc = avcodec_send_packet(codec.get(), pkt.get());
          av_packet_unref(pkt.get());
          if (rc < 0 && rc != AVERROR(EAGAIN)) throw DataError(cat("decode ", name, ": frame ", index, ": ", av::error_text(rc)));
        }
      }
      for (;;) {
        int rc = avcodec_receive_frame(codec.get(), frame.get());
        if (rc == AVERROR(EAGAIN)) break;
        if (rc == AVERROR_EOF) return;
        if (rc < 0) throw DataError(cat("decode ", name, ": frame ", index, ": ", av::error_text(rc)));
        if ((frame->flags & AV_FRAME_FLAG_CORRUPT) || frame->decode_error_flags)
          throw DataError(cat("decode ", name, ": frame ", index, " is corrupt"));
        bool more = on_frame(frame.get(), index++);
        av_frame_unref(frame.get());
        if (!more) return;
      }
    }
  }
};

}  // namespace

DecodedClip decode_clip(const uint8_t* data, size_t size, const std::string& name, const DecodeOptions& opt) {
  require<DataError>(opt.frames >= 1 && opt.stride >= 1 && opt.width > 0 && opt.height > 0, "decode ", name,
                     ": bad options");
  Decoder d(data, size, name, opt.threads);
  AVStream* st = d.fmt->streams[d.stream];
  DecodedClip out;
  out.width = opt.width;
  out.height = opt.height;
  out.source_width = d.codec->width;
  out.source_height = d.codec->height;
  AVRational r = st->avg_frame_rate.num ? st->avg_frame_rate : st->r_frame_rate;
  out.fps = r.den ? av_q2d(r) : 0.0;

  // Frame count: the container's, or (if it has none) a counting pass.
  int64_t total = st->nb_frames;
  if (total <= 0) {
    Decoder counter(data, size, name, opt.threads);
    total = 0;
    counter.run([&](AVFrame*, int64_t) { ++total; return true; });
  }
  out.source_frames = total;
  const int64_t span = (opt.frames - 1) * opt.stride + 1;
  if (total < span)
    throw ClipTooShort(cat("decode ", name, ": ", total, " frames, the window needs ", span, " (", opt.frames,
                           " frames at stride ", opt.stride, ")"));
  int64_t start = opt.start;
  if (start < 0) {
    std::mt19937_64 rng(opt.seed);
    start = static_cast<int64_t>(rng() % static_cast<uint64_t>(total - span + 1));
  }
  require<DataError>(start + span <= total, "decode ", name, ": start ", start, " + window ", span, " exceeds ", total, " frames");

  out.frames = static_cast<int>(opt.frames);
  out.rgb.resize(static_cast<size_t>(opt.frames) * opt.width * opt.height * 3);
  av::SwsPtr sws;
  int64_t taken = 0;
  d.run([&](AVFrame* f, int64_t i) {
    if (i < start || (i - start) % opt.stride != 0) return true;
    if (!sws) {
      out.source_width = f->width;
      out.source_height = f->height;
      out.crop = choose_crop(f->width, f->height, opt.width, opt.height, opt.crop, opt.scale_min, opt.seed);
      const AVPixFmtDescriptor* desc = av_pix_fmt_desc_get(static_cast<AVPixelFormat>(f->format));
      if (desc) {  // keep the crop origin on the chroma grid
        out.crop.x &= ~((1 << desc->log2_chroma_w) - 1);
        out.crop.y &= ~((1 << desc->log2_chroma_h) - 1);
      }
      sws.reset(sws_getContext(out.crop.w, out.crop.h, static_cast<AVPixelFormat>(f->format), opt.width, opt.height,
                               AV_PIX_FMT_RGB24, SWS_BICUBIC, nullptr, nullptr, nullptr));
      if (!sws) throw DataError(cat("decode ", name, ": swscale cannot convert ", av_get_pix_fmt_name(static_cast<AVPixelFormat>(f->format))));
    }
    if (f->width != out.source_width || f->height != out.source_height)
      throw DataError(cat("decode ", name, ": frame ", i, " changes size to ", f->width, "x", f->height));
    const uint8_t* planes[4];
    int strides[4];
    crop_planes(f, out.crop, planes, strides);
    uint8_t* dst[4] = {out.rgb.data() + static_cast<size_t>(taken) * opt.width * opt.height * 3, nullptr, nullptr, nullptr};
    int dst_stride[4] = {opt.width * 3, 0, 0, 0};
    sws_scale(sws.get(), planes, strides, 0, out.crop.h, dst, dst_stride);
    out.frame_indices.push_back(i);
    return ++taken < opt.frames;
  });
  if (taken < opt.frames)
    throw ClipTooShort(cat("decode ", name, ": container claims ", total, " frames but only ",
                           start + (taken ? (taken - 1) * opt.stride + 1 : 0), " decoded; the window needs ", span));
  return out;
}

}  // namespace mcm::io

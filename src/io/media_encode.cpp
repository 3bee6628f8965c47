// FFmpeg encode paths. mp4 and gif go through a muxer into a seekable memory sink; JPEG is the
// single MJPEG packet, which is a complete JFIF file.
#include "io/media_encode.hpp"

extern "C" {
#include <libavutil/opt.h>
#include <libavutil/pixdesc.h>
}

#include <cstring>
#include <vector>

#include "core/error.hpp"
#include "io/ffmpeg_util.hpp"

namespace mcm::io {
namespace {

av::CodecPtr open_encoder(AVCodecID id, const char* prefer, int w, int h, AVPixelFormat fmt, AVRational tb,
                          AVDictionary** opts, bool global_header) {
  const AVCodec* enc = prefer ? avcodec_find_encoder_by_name(prefer) : nullptr;
  if (!enc) enc = avcodec_find_encoder(id);
  if (!enc) throw IoError(cat("encode: no encoder for ", avcodec_get_name(id)));
  av::CodecPtr c(avcodec_alloc_context3(enc));
  if (!c) throw IoError("avcodec_alloc_context3: out of memory");
  c->width = w;
  c->height = h;
  c->pix_fmt = fmt;
  c->time_base = tb;
  c->framerate = av_inv_q(tb);
  c->thread_count = 1;  // deterministic output
  if (global_header) c->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
  int rc = avcodec_open2(c.get(), enc, opts);
  if (rc < 0) throw IoError(cat("encode: open ", enc->name, ": ", av::error_text(rc)));
  return c;
}

// Converts one RGB24 frame into an encoder frame of the encoder's pixel format.
// swscale's SIMD paths read whole vectors, past the end of a tightly packed row (valgrind: 16
// bytes past the caller's last frame), which made encodes depend on whatever memory followed.
// The frame is copied into rows padded to 64 bytes plus a zeroed tail, so every byte it reads is
// ours and the output is deterministic.
void fill_frame(SwsContext* sws, const uint8_t* rgb, int w, int h, AVFrame* f, std::vector<uint8_t>& padded) {
  const size_t row = static_cast<size_t>(w) * 3, stride = (row + 63) / 64 * 64;
  padded.assign(stride * static_cast<size_t>(h) + 64, 0);
  for (int y = 0; y < h; ++y) std::memcpy(padded.data() + stride * static_cast<size_t>(y), rgb + row * static_cast<size_t>(y), row);
  const uint8_t* src[4] = {padded.data(), nullptr, nullptr, nullptr};
  int src_stride[4] = {static_cast<int>(stride), 0, 0, 0};
  if (av_frame_make_writable(f) < 0) throw IoError("encode: frame not writable");
  sws_scale(sws, src, src_stride, 0, h, f->data, f->linesize);
}

std::vector<uint8_t> encode_container(const char* format, AVCodecID id, const char* prefer, AVPixelFormat pix,
                                      const uint8_t* rgb, int frames, int w, int h, int fps, AVDictionary* codec_opts,
                                      const char* mux_opts) {
  struct DictFree { void operator()(AVDictionary* d) const { av_dict_free(&d); } };
  std::unique_ptr<AVDictionary, DictFree> owned_opts(codec_opts);  // freed on every path
  codec_opts = nullptr;
  av::quiet_logs();
  require<IoError>(frames > 0 && w > 0 && h > 0 && fps > 0, "encode ", format, ": empty video");
  av::MemoryWriter sink;
  av::AvioPtr avio = sink.make_avio();
  AVFormatContext* raw = nullptr;
  av::check(avformat_alloc_output_context2(&raw, nullptr, format, nullptr), cat("encode: muxer ", format));
  av::OutputPtr oc(raw);
  oc->pb = avio.get();
  oc->flags |= AVFMT_FLAG_CUSTOM_IO;
  oc->flags |= AVFMT_FLAG_BITEXACT;
  AVRational tb{1, fps};
  AVDictionary* opts = owned_opts.release();
  auto codec = [&] {
    struct Free { AVDictionary*& d; ~Free() { av_dict_free(&d); } } free_after{opts};
    return open_encoder(id, prefer, w, h, pix, tb, &opts, oc->oformat->flags & AVFMT_GLOBALHEADER);
  }();
  AVStream* st = avformat_new_stream(oc.get(), nullptr);
  if (!st) throw IoError("avformat_new_stream: out of memory");
  st->time_base = tb;
  av::check(avcodec_parameters_from_context(st->codecpar, codec.get()), "encode: stream parameters");
  AVDictionary* mopts = nullptr;
  if (mux_opts) av_dict_parse_string(&mopts, mux_opts, "=", ":", 0);
  int rc = avformat_write_header(oc.get(), &mopts);
  av_dict_free(&mopts);
  av::check(rc, cat("encode ", format, ": write header"));

  av::SwsPtr sws(sws_getContext(w, h, AV_PIX_FMT_RGB24, w, h, pix, SWS_BICUBIC | SWS_ACCURATE_RND | SWS_BITEXACT, nullptr, nullptr, nullptr));
  if (!sws) throw IoError(cat("encode: swscale rgb24 -> ", av_get_pix_fmt_name(pix)));
  auto frame = av::make_frame();
  frame->format = pix;
  frame->width = w;
  frame->height = h;
  av::check(av_frame_get_buffer(frame.get(), 0), "encode: frame buffer");
  auto pkt = av::make_packet();
  auto drain = [&] {
    for (;;) {
      int r = avcodec_receive_packet(codec.get(), pkt.get());
      if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) return;
      av::check(r, "encode: receive packet");
      // Encoders leave duration 0; the mp4 edit list then drops the last frame. One frame each.
      if (pkt->duration == 0) pkt->duration = 1;
      av_packet_rescale_ts(pkt.get(), codec->time_base, st->time_base);
      pkt->stream_index = st->index;
      av::check(av_interleaved_write_frame(oc.get(), pkt.get()), "encode: write packet");
    }
  };
  std::vector<uint8_t> padded;
  for (int t = 0; t < frames; ++t) {
    fill_frame(sws.get(), rgb + static_cast<size_t>(t) * w * h * 3, w, h, frame.get(), padded);
    frame->pts = t;
    av::check(avcodec_send_frame(codec.get(), frame.get()), "encode: send frame");
    drain();
  }
  av::check(avcodec_send_frame(codec.get(), nullptr), "encode: flush");
  drain();
  av::check(av_write_trailer(oc.get()), cat("encode ", format, ": trailer"));
  avio_flush(avio.get());
  return std::move(sink.bytes);
}

}  // namespace

std::vector<uint8_t> encode_mp4(const uint8_t* rgb, int frames, int width, int height, const VideoEncodeOptions& opt) {
  require<IoError>(width % 2 == 0 && height % 2 == 0, "encode mp4: ", width, "x", height, " must be even for yuv420p");
  AVDictionary* o = nullptr;
  av_dict_set(&o, "crf", std::to_string(opt.crf).c_str(), 0);
  av_dict_set(&o, "preset", "medium", 0);
  return encode_container("mp4", AV_CODEC_ID_H264, "libx264", AV_PIX_FMT_YUV420P, rgb, frames, width, height, opt.fps, o,
                          nullptr);
}

std::vector<uint8_t> encode_gif(const uint8_t* rgb, int frames, int width, int height, int fps) {
  return encode_container("gif", AV_CODEC_ID_GIF, nullptr, AV_PIX_FMT_RGB8, rgb, frames, width, height, fps, nullptr, "loop=0");
}

namespace {
// One still through an image codec: JPEG (qscale > 0) or PNG (lossless RGB).
std::vector<uint8_t> encode_still(AVCodecID id, const char* what, AVPixelFormat pix, const uint8_t* rgb, int width, int height,
                                  int qscale) {
  av::quiet_logs();
  require<IoError>(width > 0 && height > 0, "encode ", what, ": empty image");
  AVRational tb{1, 25};
  auto c = [&] {
    const AVCodec* enc = avcodec_find_encoder(id);
    if (!enc) throw IoError(cat("encode ", what, ": this FFmpeg has no ", what, " encoder"));
    av::CodecPtr cc(avcodec_alloc_context3(enc));
    if (!cc) throw IoError("avcodec_alloc_context3: out of memory");
    cc->width = width;
    cc->height = height;
    cc->pix_fmt = pix;
    cc->time_base = tb;
    if (qscale > 0) {
      cc->flags |= AV_CODEC_FLAG_QSCALE;
      cc->global_quality = FF_QP2LAMBDA * qscale;
      cc->qmin = cc->qmax = qscale;
    }
    cc->thread_count = 1;
    av::check(avcodec_open2(cc.get(), enc, nullptr), cat("encode ", what, ": open the encoder"));
    return cc;
  }();
  av::SwsPtr sws(sws_getContext(width, height, AV_PIX_FMT_RGB24, width, height, pix,
                                SWS_BICUBIC | SWS_ACCURATE_RND | SWS_BITEXACT, nullptr, nullptr, nullptr));
  if (!sws) throw IoError(cat("encode ", what, ": swscale rgb24 -> ", av_get_pix_fmt_name(pix)));
  auto frame = av::make_frame();
  frame->format = pix;
  frame->width = width;
  frame->height = height;
  av::check(av_frame_get_buffer(frame.get(), 0), cat("encode ", what, ": frame buffer"));
  std::vector<uint8_t> padded;
  fill_frame(sws.get(), rgb, width, height, frame.get(), padded);
  frame->pts = 0;
  if (qscale > 0) frame->quality = c->global_quality;
  av::check(avcodec_send_frame(c.get(), frame.get()), cat("encode ", what, ": send"));
  av::check(avcodec_send_frame(c.get(), nullptr), cat("encode ", what, ": flush"));
  auto pkt = av::make_packet();
  av::check(avcodec_receive_packet(c.get(), pkt.get()), cat("encode ", what, ": receive"));
  return std::vector<uint8_t>(pkt->data, pkt->data + pkt->size);
}
}  // namespace

std::vector<uint8_t> encode_jpeg(const uint8_t* rgb, int width, int height, int qscale) {
  return encode_still(AV_CODEC_ID_MJPEG, "jpeg", AV_PIX_FMT_YUVJ420P, rgb, width, height, qscale);
}

std::vector<uint8_t> encode_png(const uint8_t* rgb, int width, int height) {
  return encode_still(AV_CODEC_ID_PNG, "png", AV_PIX_FMT_RGB24, rgb, width, height, 0);
}

}  // namespace mcm::io

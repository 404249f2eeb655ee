// Fused masked attention for XLA:CPU (forward and backward), called through the XLA FFI.
//
// Why: on the 2-core development machines XLA:CPU runs attention as separate ops: a batched QK^T dot that
// writes the whole [b, n, l, s] score tensor (several MB, out of L2), a softmax pass over it and a PV dot.
// At Show-o's small head_dim (64) those dots reach 75-125 GFLOP/s against 300-400 for the linear layers, and
// attention was half of a MaskGIT run. Here one (batch, head) pair at a time stays in L1/L2: the
// scores of a 32-row query block are computed, soft-maxed and multiplied by V before the next block starts,
// and key columns outside the block's [min k_start, max k_end) are never touched (the omni/predict-next masks
// are per-query key ranges, see showo_jax/masks.py).
//
// Layouts (row-major, float32): q [b, l, n, e]; k, v [b, s, kh, e] with query head h reading KV head
// h / (n / kh) (the reference's repeat_kv order); k_start, k_end [b, l] int32 (absolute key indices);
// out [b, l, n, e]; lse [b, n, l] (log-sum-exp of the scaled, masked scores, kept for the backward pass).
// A row with an empty range gets uniform weights over all s keys, which is what the dense XLA path (masked
// scores all equal) computes; its scores then carry no gradient.
//
// Vector code uses GCC vector extensions (16 floats), which compile to AVX-512 under -march=native and to
// pairs of AVX2 registers otherwise; the build (showo_jax/kernels/cpu_flash.py) compiles this file on the
// machine that runs it.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <thread>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

typedef float vf __attribute__((vector_size(64)));
typedef float vfu __attribute__((vector_size(64), aligned(4)));
typedef int32_t vi __attribute__((vector_size(64)));
constexpr int W = 16;    // floats per vector
constexpr int RB = 32;   // query rows per block (score block RB x s stays in L2)
constexpr int MR = 8;    // rows per register tile
constexpr int KT = 32;   // key columns per score tile (2 vectors)
constexpr int kMaxHeadDim = 256;

inline vf load(const float* p) { return *reinterpret_cast<const vfu*>(p); }
inline void store(float* p, vf x) { *reinterpret_cast<vfu*>(p) = x; }
// A plain splat: the broadcast of a float loaded from memory is then one load-port uop. (Written as
// `(vf){} + x` it was an add and a register shuffle per broadcast, both on the FMA ports, and the 8x32 score
// and mix tiles ran at ~60% of the FMA rate: `0 + x` is not `x` for x = -0.0, so the add cannot go.)
inline vf bcast(float x) { return (vf){x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x}; }
inline vi iota() { return (vi){0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}; }

// exp(x) for x <= 0 (scores minus their row maximum): Cody-Waite reduction and the Cephes expf polynomial,
// within 2 ulp of expf; inputs below -87 are clamped (their weight, < 2e-38, is below float resolution of
// a row sum that is >= 1).
inline vf vexp(vf x) {
  x = x < -87.0f ? bcast(-87.0f) : x;
  vf n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;   // round to nearest integer
  vf r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  vf p = bcast(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  vi bits = (__builtin_convertvector(n, vi) + 127) << 23;
  return p * reinterpret_cast<vf&>(bits);
}

inline float hsum(vf x) {
  float s = 0.f;
  for (int i = 0; i < W; ++i) s += x[i];
  return s;
}

inline float hmax(vf x) {
  float m = x[0];
  for (int i = 1; i < W; ++i) m = std::max(m, x[i]);
  return m;
}

// Run f(0..n-1) on XLA's intra-op pool plus the calling thread. Items are claimed from a shared counter, so a
// pool thread that starts late finds nothing left and returns; the caller waits only for claimed items.
template <typename F>
void parallel_for(ffi::ThreadPool& pool, int64_t n, const F& f) {
  struct State {
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> done{0};
  };
  auto st = std::make_shared<State>();
  const F* fp = &f;
  auto work = [st, n, fp]() {
    for (;;) {
      int64_t i = st->next.fetch_add(1);
      if (i >= n) return;
      (*fp)(i);
      st->done.fetch_add(1, std::memory_order_release);
    }
  };
  int64_t helpers = std::min<int64_t>(pool.num_threads(), n) - 1;
  for (int64_t t = 0; t < helpers; ++t) {
    auto copy = work;
    pool.Schedule(std::move(copy));
  }
  work();
  while (st->done.load(std::memory_order_acquire) < n) std::this_thread::yield();
}

struct Dims {
  int64_t b, l, n, s, kh, e, g;
};

ffi::Error check(const Dims& d) {
  if (d.e % W || d.e > kMaxHeadDim || d.kh == 0 || d.n % d.kh)
    return ffi::Error::InvalidArgument("cpu flash attention needs head_dim % 16 == 0, head_dim <= 256 and "
                                       "query heads a multiple of KV heads");
  return ffi::Error::Success();
}

// K (or V) of one (batch, kv head) as k-major [s][e] and e-major [e][sp] copies.
void pack(const float* src, const Dims& d, int64_t i, int64_t kvh, float* rows, float* cols, int64_t sp) {
  for (int64_t t = 0; t < d.s; ++t) {
    const float* p = src + ((i * d.s + t) * d.kh + kvh) * d.e;
    std::memcpy(rows + t * d.e, p, d.e * sizeof(float));
    if (cols)
      for (int64_t c = 0; c < d.e; ++c) cols[c * sp + t] = p[c];
  }
}

// out[r][c0 + j] = scale * sum_d a_r[d] * bt[d][c0 + j] for MR rows and the key columns [c0, c1) in tiles of
// KT (columns past c1 up to the tile end are written too; the buffers are padded for it).
void scores(const float* const* a, const float* bt, int64_t sp, int64_t e, int64_t c0, int64_t c1, float scale,
            float* out, int64_t ld) {
  for (int64_t c = c0; c < c1; c += KT) {
    vf acc[MR][2] = {};
    for (int64_t d = 0; d < e; ++d) {
      vf k0 = load(bt + d * sp + c), k1 = load(bt + d * sp + c + W);
      for (int r = 0; r < MR; ++r) {
        vf x = bcast(a[r][d]);
        acc[r][0] += x * k0;
        acc[r][1] += x * k1;
      }
    }
    for (int r = 0; r < MR; ++r) {
      store(out + r * ld + c, acc[r][0] * scale);
      store(out + r * ld + c + W, acc[r][1] * scale);
    }
  }
}

// out_r[:] = alpha * sum_{k in [c0, c1)} p[r][k] * y[k][:] for MR rows (e a multiple of 16).
void mix_rows(const float* p, int64_t ld, const float* y, int64_t e, int64_t c0, int64_t c1, float alpha,
              float* const* out) {
  for (int64_t c = 0; c < e; c += 2 * W) {
    const bool two = c + W < e;
    vf acc[MR][2] = {};
    for (int64_t k = c0; k < c1; ++k) {
      vf y0 = load(y + k * e + c), y1 = two ? load(y + k * e + c + W) : vf{};
      for (int r = 0; r < MR; ++r) {
        vf x = bcast(p[r * ld + k]);
        acc[r][0] += x * y0;
        acc[r][1] += x * y1;
      }
    }
    for (int r = 0; r < MR; ++r) {
      store(out[r] + c, acc[r][0] * alpha);
      if (two) store(out[r] + c + W, acc[r][1] * alpha);
    }
  }
}

// acc[k][:] += alpha * sum_{r < rows} p[r][k] * x_r[:] for keys [c0, c1): the transposed product of the
// backward pass (dV = P^T dO, dK = dS^T Q). Register tile: 8 keys x 32 columns, one row of x per step.
template <int NK>
inline void mix_keys_tile(const float* p, int64_t ld, const float* const* x, int rows, int64_t e, int64_t k,
                          float alpha, float* acc) {
  for (int64_t c = 0; c < e; c += 2 * W) {
    const bool two = c + W < e;
    vf a[NK][2] = {};
    for (int r = 0; r < rows; ++r) {
      vf x0 = load(x[r] + c), x1 = two ? load(x[r] + c + W) : vf{};
      const float* pr = p + r * ld + k;
      for (int j = 0; j < NK; ++j) {
        vf pj = bcast(pr[j]);
        a[j][0] += pj * x0;
        a[j][1] += pj * x1;
      }
    }
    for (int j = 0; j < NK; ++j) {
      float* o = acc + (k + j) * e + c;
      store(o, load(o) + a[j][0] * alpha);
      if (two) store(o + W, load(o + W) + a[j][1] * alpha);
    }
  }
}

void mix_keys(const float* p, int64_t ld, const float* const* x, int rows, int64_t e, int64_t c0, int64_t c1,
              float alpha, float* acc) {
  int64_t k = c0;
  for (; k + 8 <= c1; k += 8) mix_keys_tile<8>(p, ld, x, rows, e, k, alpha, acc);
  for (; k < c1; ++k) mix_keys_tile<1>(p, ld, x, rows, e, k, alpha, acc);
}

// Key range of one query row; an empty range means "uniform over all keys" (see the header).
struct Range {
  int64_t lo, hi;
  bool uniform;
};

inline Range row_range(const int32_t* ks, const int32_t* ke, int64_t s) {
  int64_t lo = std::max<int64_t>(ks[0], 0), hi = std::min<int64_t>(ke[0], s);
  if (lo >= hi) return {0, s, true};
  return {lo, hi, false};
}

// Scratch of one work item, padded so score tiles may run past the last key. It lives in a per-thread arena
// reused across items and calls: allocating and zero-filling ~0.4 MB per item cost ~15% of a MaskGIT step.
// Nothing is read before it is written except the e-major copies' padding columns, which are cleared here.
struct Scratch {
  int64_t sp, ld;
  float *kt, *kr, *vt, *vr, *s, *p, *zero, *dk, *dv;
  Scratch(const Dims& d, bool backward) {
    sp = ((d.s + KT - 1) / KT + 1) * KT;
    ld = sp;
    const int64_t et = d.e * sp, se = d.s * d.e, blk = RB * ld;
    float* base = arena(2 * et + 4 * se + 2 * blk + d.e);
    kt = base;
    vt = kt + et;
    kr = vt + et;
    vr = kr + se;
    dk = vr + se;
    dv = dk + se;
    s = dv + se;
    p = s + blk;
    zero = p + blk;
    std::memset(zero, 0, d.e * sizeof(float));
    for (int64_t c = 0; c < d.e; ++c) {
      std::memset(kt + c * sp + d.s, 0, (sp - d.s) * sizeof(float));
      if (backward) std::memset(vt + c * sp + d.s, 0, (sp - d.s) * sizeof(float));
    }
    if (backward) std::memset(dk, 0, 2 * se * sizeof(float));   // dK, dV accumulators
  }
  static float* arena(int64_t n) {
    thread_local std::unique_ptr<float[]> buf;
    thread_local int64_t cap = 0;
    if (n > cap) {
      buf.reset(new float[n]);
      cap = n;
    }
    return buf.get();
  }
};

// Row-block bookkeeping shared by both passes: valid rows, ranges and the block's key span.
struct Block {
  int rows;
  Range rg[RB];
  int64_t lo, hi;
};

Block block_of(const int32_t* ks, const int32_t* ke, const Dims& d, int64_t i, int64_t t0) {
  Block blk;
  blk.rows = static_cast<int>(std::min<int64_t>(RB, d.l - t0));
  blk.lo = d.s;
  blk.hi = 0;
  for (int r = 0; r < blk.rows; ++r) {
    int64_t t = i * d.l + t0 + r;
    blk.rg[r] = row_range(ks + t, ke + t, d.s);
    blk.lo = std::min(blk.lo, blk.rg[r].lo);
    blk.hi = std::max(blk.hi, blk.rg[r].hi);
  }
  return blk;
}

// Scores of the block's rows (MR at a time; missing rows read zeros).
void block_scores(const Block& blk, const float* const* rowptr, const Scratch& sc, const float* bt, int64_t e,
                  float scale, float* out) {
  for (int r0 = 0; r0 < blk.rows; r0 += MR) {
    const float* a[MR];
    for (int r = 0; r < MR; ++r) a[r] = r0 + r < blk.rows ? rowptr[r0 + r] : sc.zero;
    scores(a, bt, sc.sp, e, blk.lo, blk.hi, scale, out + r0 * sc.ld, sc.ld);
  }
}

ffi::Error Forward(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> q, ffi::Buffer<ffi::F32> k,
                   ffi::Buffer<ffi::F32> v, ffi::Buffer<ffi::S32> k_start, ffi::Buffer<ffi::S32> k_end,
                   ffi::ResultBuffer<ffi::F32> out, ffi::ResultBuffer<ffi::F32> lse, float scale) {
  auto qd = q.dimensions(), kd = k.dimensions();
  if (qd.size() != 4 || kd.size() != 4) return ffi::Error::InvalidArgument("q, k, v must be rank 4");
  Dims d{qd[0], qd[1], qd[2], kd[1], kd[2], qd[3], qd[2] / kd[2]};
  if (auto err = check(d); !err.success()) return err;
  const float *qp = q.typed_data(), *kp = k.typed_data(), *vp = v.typed_data();
  const int32_t *ks = k_start.typed_data(), *ke = k_end.typed_data();
  float *op = out->typed_data(), *lp = lse->typed_data();

  parallel_for(pool, d.b * d.n, [&](int64_t item) {
    const int64_t i = item / d.n, h = item % d.n, kvh = h / d.g;
    Scratch sc(d, false);
    pack(kp, d, i, kvh, sc.kr, sc.kt, sc.sp);
    pack(vp, d, i, kvh, sc.vr, nullptr, 0);
    for (int64_t t0 = 0; t0 < d.l; t0 += RB) {
      Block blk = block_of(ks, ke, d, i, t0);
      const float* qrow[RB];
      for (int r = 0; r < blk.rows; ++r) qrow[r] = qp + ((i * d.l + t0 + r) * d.n + h) * d.e;
      float* S = sc.s;
      block_scores(blk, qrow, sc, sc.kt, d.e, scale, S);
      float inv[RB];
      for (int r = 0; r < blk.rows; ++r) {
        float* row = S + r * sc.ld;
        const Range rg = blk.rg[r];
        float m = 0.f;
        if (!rg.uniform) {
          vf mv = bcast(-std::numeric_limits<float>::infinity());
          for (int64_t c = blk.lo; c < blk.hi; c += W) {
            vi idx = iota() + static_cast<int32_t>(c);
            vi ok = (idx >= static_cast<int32_t>(rg.lo)) & (idx < static_cast<int32_t>(rg.hi));
            mv = ok ? (load(row + c) > mv ? load(row + c) : mv) : mv;
          }
          m = hmax(mv);
        }
        vf sum = {};
        for (int64_t c = blk.lo; c < blk.hi; c += W) {
          vi idx = iota() + static_cast<int32_t>(c);
          vi ok = (idx >= static_cast<int32_t>(rg.lo)) & (idx < static_cast<int32_t>(rg.hi));
          vf pv = rg.uniform ? bcast(1.f) : vexp(load(row + c) - m);
          pv = ok ? pv : vf{};
          store(row + c, pv);
          sum += pv;
        }
        float l = hsum(sum);
        inv[r] = 1.f / l;
        lp[(i * d.n + h) * d.l + t0 + r] = m + std::log(l);
      }
      for (int r0 = 0; r0 < blk.rows; r0 += MR) {
        float tmp[MR][kMaxHeadDim];   // sink for the padding rows of the last tile
        float* o[MR];
        for (int r = 0; r < MR; ++r)
          o[r] = r0 + r < blk.rows ? op + ((i * d.l + t0 + r0 + r) * d.n + h) * d.e : tmp[r];
        mix_rows(S + r0 * sc.ld, sc.ld, sc.vr, d.e, blk.lo, blk.hi, 1.f, o);
        for (int r = 0; r < MR && r0 + r < blk.rows; ++r)
          for (int64_t c = 0; c < d.e; c += W) store(o[r] + c, load(o[r] + c) * inv[r0 + r]);
      }
    }
  });
  return ffi::Error::Success();
}

ffi::Error Backward(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> q, ffi::Buffer<ffi::F32> k,
                    ffi::Buffer<ffi::F32> v, ffi::Buffer<ffi::S32> k_start, ffi::Buffer<ffi::S32> k_end,
                    ffi::Buffer<ffi::F32> out, ffi::Buffer<ffi::F32> lse, ffi::Buffer<ffi::F32> dout,
                    ffi::ResultBuffer<ffi::F32> dq, ffi::ResultBuffer<ffi::F32> dk,
                    ffi::ResultBuffer<ffi::F32> dv, float scale) {
  auto qd = q.dimensions(), kd = k.dimensions();
  if (qd.size() != 4 || kd.size() != 4) return ffi::Error::InvalidArgument("q, k, v must be rank 4");
  Dims d{qd[0], qd[1], qd[2], kd[1], kd[2], qd[3], qd[2] / kd[2]};
  if (auto err = check(d); !err.success()) return err;
  const float *qp = q.typed_data(), *kp = k.typed_data(), *vp = v.typed_data();
  const float *opp = out.typed_data(), *lp = lse.typed_data(), *gp = dout.typed_data();
  const int32_t *ks = k_start.typed_data(), *ke = k_end.typed_data();
  float *dqp = dq->typed_data(), *dkp = dk->typed_data(), *dvp = dv->typed_data();

  // One item per (batch, KV head): the query heads of a GQA group accumulate into the same dK/dV rows.
  parallel_for(pool, d.b * d.kh, [&](int64_t item) {
    const int64_t i = item / d.kh, kvh = item % d.kh;
    Scratch sc(d, true);
    pack(kp, d, i, kvh, sc.kr, sc.kt, sc.sp);
    pack(vp, d, i, kvh, sc.vr, sc.vt, sc.sp);
    for (int64_t h = kvh * d.g; h < (kvh + 1) * d.g; ++h) {
      for (int64_t t0 = 0; t0 < d.l; t0 += RB) {
        Block blk = block_of(ks, ke, d, i, t0);
        const float *qrow[RB], *grow[RB];
        float* dqrow[MR * ((RB + MR - 1) / MR)];
        float tmp[MR][kMaxHeadDim];
        float delta[RB];
        for (int r = 0; r < blk.rows; ++r) {
          const int64_t off = ((i * d.l + t0 + r) * d.n + h) * d.e;
          qrow[r] = qp + off;
          grow[r] = gp + off;
          dqrow[r] = dqp + off;
          vf acc = {};
          for (int64_t c = 0; c < d.e; c += W) acc += load(gp + off + c) * load(opp + off + c);
          delta[r] = hsum(acc);
        }
        for (int r = blk.rows; r < MR * ((RB + MR - 1) / MR); ++r) dqrow[r] = tmp[r % MR];
        float *P = sc.p, *dS = sc.s;
        block_scores(blk, qrow, sc, sc.kt, d.e, scale, P);   // scaled scores
        block_scores(blk, grow, sc, sc.vt, d.e, 1.f, dS);    // dP = dO V^T
        for (int r = 0; r < blk.rows; ++r) {
          const Range rg = blk.rg[r];
          const float lr = lp[(i * d.n + h) * d.l + t0 + r];
          float *prow = P + r * sc.ld, *drow = dS + r * sc.ld;
          for (int64_t c = blk.lo; c < blk.hi; c += W) {
            vi idx = iota() + static_cast<int32_t>(c);
            vi ok = (idx >= static_cast<int32_t>(rg.lo)) & (idx < static_cast<int32_t>(rg.hi));
            vf pv = vexp((rg.uniform ? vf{} : load(prow + c)) - lr);
            pv = ok ? pv : vf{};
            vf ds = pv * (load(drow + c) - delta[r]);
            store(prow + c, pv);
            store(drow + c, rg.uniform ? vf{} : ds);
          }
        }
        mix_keys(P, sc.ld, grow, blk.rows, d.e, blk.lo, blk.hi, 1.f, sc.dv);
        mix_keys(dS, sc.ld, qrow, blk.rows, d.e, blk.lo, blk.hi, scale, sc.dk);
        for (int r0 = 0; r0 < blk.rows; r0 += MR)
          mix_rows(dS + r0 * sc.ld, sc.ld, sc.kr, d.e, blk.lo, blk.hi, scale, dqrow + r0);
      }
    }
    for (int64_t t = 0; t < d.s; ++t) {
      const int64_t off = ((i * d.s + t) * d.kh + kvh) * d.e;
      std::memcpy(dkp + off, sc.dk + t * d.e, d.e * sizeof(float));
      std::memcpy(dvp + off, sc.dv + t * d.e, d.e * sizeof(float));
    }
  });
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(ShowoCpuFlashForward, Forward,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<float>("scale"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(ShowoCpuFlashBackward, Backward,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<float>("scale"));

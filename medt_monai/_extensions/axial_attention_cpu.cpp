// Fused CPU kernel of MedT's axial attention (Eq. 2 / 3 of Valanarasu et al., MICCAI 2021) for many short lines.
//
// Computes what medt_monai.networks.layers.axial_attention.attend_lines computes (and its gradients) straight from
// the layer's (N, 2C, H, W) qkv map (H, W: the image axes): every row (axis = 1) or column (axis = 0) of the map is
// a line of length L. The kernel works on LANES lines of one head at a time and one output row i at a time, so the
// row of logits, its softmax and every product that uses it stay in L1, instead of a dozen passes of PyTorch operators
// over (lines, heads, L, L) tensors; the training backward recomputes each row's attention weights (nothing of size
// L x L is stored).
//
// Per head g (d = C / heads channels, h = d / 2), qkv channels [2gd, 2gd + h) are q, [2gd + h, 2gd + d) are k and
// [2gd + d, 2gd + 2d) are v. The logits' BatchNorms are per-head factors (scales[g] = s_qk, s_qr, s_kr) and one shift:
//   logit_ij = shift_g + s_qk q_i.k_j + s_qr q_i.r^q_ij + s_kr k_j.r^k_ji
// with the relative encodings read from the layer's table by offset, r^q_ij = table[c, i - j + K - 1] (rows [0, h)),
// r^k_ji = table[h + c, j - i + K - 1] (rows [h, d)), r^v_ij = table[d + c, i - j + K - 1] (rows [d, 2d)), K the
// table's axis length (L <= K). Outputs, (N, C, H, W): values = sum_j a_ij v_j and values_position = sum_j a_ij r^v_ij,
// or, given out_affine (3, C) = (a, b, c), the single map a values + b values_position + c (eval-mode BatchNorms).

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <optional>
#include <type_traits>
#include <vector>

namespace {

// Lines per block: the kernel vectorises across LANES lines of one head (every operand is stored "lanes innermost",
// x[c][i] is a vector of LANES lines), so each vector instruction does the same step for LANES lines and no loop has a
// remainder or a horizontal sum, whatever the (short) length L. LANES = 16 floats fill one AVX-512 register, two AVX2
// ones. The vectors are GCC / Clang vector extensions (the compiler splits them for narrower instruction sets).
constexpr int64_t LANES = 16;
typedef float FloatLanes __attribute__((vector_size(LANES * sizeof(float))));
typedef double DoubleLanes __attribute__((vector_size(LANES * sizeof(double))));
typedef int32_t IntLanes __attribute__((vector_size(LANES * sizeof(int32_t))));

template <typename T>
struct LanesOf;
template <>
struct LanesOf<float> {
  using type = FloatLanes;
};
template <>
struct LanesOf<double> {
  using type = DoubleLanes;
};
template <typename T>
using Lanes = typename LanesOf<T>::type;
template <typename T>
using LanesBuffer = std::vector<Lanes<T>>;

// exp(x) for x <= 0 (logits minus their row maximum): Cephes' expf polynomial (relative error ~1e-7, like std::exp
// in float), rounding by the 1.5 * 2^23 trick and 2^n built in the exponent bits. Values below -87 are clamped
// (exp < 2e-38, far below the round-off of a softmax denominator >= 1).
inline FloatLanes exp_nonpositive(FloatLanes x) {
  x = x > -87.0f ? x : -87.0f;
  const FloatLanes n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round(x / ln 2)
  const FloatLanes r = x - n * 0.693359375f + n * 2.12194440e-4f;               // x - n ln 2, in two parts
  FloatLanes p = r * 1.9875691500e-4f + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const IntLanes bits = (__builtin_convertvector(n, IntLanes) + 127) << 23;  // 2^n
  return p * reinterpret_cast<const FloatLanes&>(bits);
}

// float64 (for exactness checks): std::exp lane by lane.
inline DoubleLanes exp_nonpositive(DoubleLanes x) {
  for (int64_t lane = 0; lane < LANES; ++lane) x[lane] = std::exp(x[lane]);
  return x;
}

template <typename T>
T lane_sum(const Lanes<T>& x) {
  T total = 0;
  for (int64_t lane = 0; lane < LANES; ++lane) total += x[lane];
  return total;
}

// Where the lines of an (N, channels, H, W) tensor are: line = n * others + o, position i along `axis`.
struct Layout {
  int64_t n, channel, position, other;
  Layout(const at::Tensor& t, int64_t axis)
      : n(t.stride(0)), channel(t.stride(1)), position(t.stride(2 + axis)), other(t.stride(3 - axis)) {}
};

struct Sizes {
  int64_t lines, others, heads, h, d, L, K;  // K: axis length of the relative table (0 without positions)
  int64_t blocks() const { return (lines + LANES - 1) / LANES; }
};

// The query (= key) channels per head, h, as a compile-time constant QUERY_CHANNELS for the counts MedT uses (1, 2, 4,
// 8), so the channel loops unroll and their sums stay in registers; QUERY_CHANNELS = 0: any other count, read at run
// time.
template <int64_t QUERY_CHANNELS>
inline int64_t query_channels(const Sizes& s) {
  return QUERY_CHANNELS > 0 ? QUERY_CHANNELS : s.h;
}

template <typename F>
void dispatch_query_channels(int64_t h, const F& f) {
  switch (h) {
    case 1: f(std::integral_constant<int64_t, 1>()); break;
    case 2: f(std::integral_constant<int64_t, 2>()); break;
    case 4: f(std::integral_constant<int64_t, 4>()); break;
    case 8: f(std::integral_constant<int64_t, 8>()); break;
    default: f(std::integral_constant<int64_t, 0>());
  }
}

// N lane vectors the compiler can keep in registers (N > 0, a compile-time count); N = 0: n of them on the heap.
template <typename T, int64_t N>
struct Registers {
  std::conditional_t<(N > 0), std::array<Lanes<T>, (N > 0 ? N : 1)>, LanesBuffer<T>> v;
  explicit Registers(int64_t n) {
    if constexpr (N == 0) v.resize(n);
    std::fill(v.begin(), v.end(), Lanes<T>{});
  }
  Lanes<T>& operator[](int64_t e) { return v[e]; }
};

// Offsets of the LANES lines of one block in a tensor of layout `layout`; `count` of them are real lines. `adjacent`:
// all LANES lines are real and next to each other in memory (height attention on an NCHW map), so a lane vector is one
// load.
struct BlockLines {
  std::array<int64_t, LANES> offset{};
  int64_t count = 0;
  bool adjacent = false;
  BlockLines(const Sizes& s, const Layout& layout, int64_t block) {
    for (int64_t lane = 0; lane < LANES && block * LANES + lane < s.lines; ++lane, ++count) {
      const int64_t line = block * LANES + lane;
      offset[lane] = (line / s.others) * layout.n + (line % s.others) * layout.other;
    }
    adjacent = count == LANES;
    for (int64_t lane = 1; lane < LANES && adjacent; ++lane) adjacent = offset[lane] == offset[0] + lane;
  }
};

// dst[c * c_step + i * i_step][lane] = src[line lane, channel first + c, position i] (zero in lanes past the last
// line).
// Three memory orders read contiguously: lines next to each other (height attention, NCHW), a line's positions next to
// each other (width attention, NCHW), a position's channels next to each other (channels-last).
template <typename T>
void gather(const T* src, const Layout& layout, const BlockLines& lines, int64_t first, int64_t channels, int64_t L,
            int64_t c_step, int64_t i_step, Lanes<T>* dst) {
  src += first * layout.channel;
  if (lines.adjacent) {
    for (int64_t c = 0; c < channels; ++c)
      for (int64_t i = 0; i < L; ++i)
        std::memcpy(&dst[c * c_step + i * i_step], src + lines.offset[0] + c * layout.channel + i * layout.position,
                    sizeof(Lanes<T>));
    return;
  }
  if (lines.count < LANES)
    for (int64_t c = 0; c < channels; ++c)
      for (int64_t i = 0; i < L; ++i) dst[c * c_step + i * i_step] = Lanes<T>{};
  const bool positions_inner = layout.position == 1 || layout.channel != 1;
  for (int64_t lane = 0; lane < lines.count; ++lane) {
    const T* line = src + lines.offset[lane];
    if (positions_inner) {
      for (int64_t c = 0; c < channels; ++c)
        for (int64_t i = 0; i < L; ++i)
          dst[c * c_step + i * i_step][lane] = line[c * layout.channel + i * layout.position];
    } else {
      for (int64_t i = 0; i < L; ++i)
        for (int64_t c = 0; c < channels; ++c) dst[c * c_step + i * i_step][lane] = line[c + i * layout.position];
    }
  }
}

// The way back: dst[line lane, channel first + c, position i] = src[c * c_step + i * i_step][lane] for the real lines.
template <typename T>
void scatter(const Lanes<T>* src, int64_t c_step, int64_t i_step, const Layout& layout, const BlockLines& lines,
             int64_t first, int64_t channels, int64_t L, T* dst) {
  dst += first * layout.channel;
  if (lines.adjacent) {
    for (int64_t c = 0; c < channels; ++c)
      for (int64_t i = 0; i < L; ++i)
        std::memcpy(dst + lines.offset[0] + c * layout.channel + i * layout.position, &src[c * c_step + i * i_step],
                    sizeof(Lanes<T>));
    return;
  }
  const bool positions_inner = layout.position == 1 || layout.channel != 1;
  for (int64_t lane = 0; lane < lines.count; ++lane) {
    T* line = dst + lines.offset[lane];
    if (positions_inner) {
      for (int64_t c = 0; c < channels; ++c)
        for (int64_t i = 0; i < L; ++i)
          line[c * layout.channel + i * layout.position] = src[c * c_step + i * i_step][lane];
    } else {
      for (int64_t i = 0; i < L; ++i)
        for (int64_t c = 0; c < channels; ++c) line[c + i * layout.position] = src[c * c_step + i * i_step][lane];
    }
  }
}

// One block's operands, [c * L + i]: q scaled for q.k (qk), for q.r^q (q_r), k raw and scaled for k.r^k (k_r), v;
// and the unscaled q kept for the scales' gradients.
template <typename T>
struct Block {
  LanesBuffer<T> q, qk, k, v, q_r, k_r;
  Block(const Sizes& s, bool positional)
      : q(s.h * s.L), qk(s.h * s.L), k(s.h * s.L), v(s.d * s.L), q_r(positional ? s.h * s.L : 0),
        k_r(positional ? s.h * s.L : 0) {}

  void load_queries_keys(const T* qkv, const Layout& layout, const BlockLines& lines, const Sizes& s, int64_t g) {
    const int64_t first = 2 * g * s.d;
    gather(qkv, layout, lines, first, s.h, s.L, s.L, 1, q.data());
    gather(qkv, layout, lines, first + s.h, s.h, s.L, s.L, 1, k.data());
  }

  void load(const T* qkv, const Layout& layout, const BlockLines& lines, const Sizes& s, int64_t g, const T* scale) {
    const int64_t L = s.L, h = s.h;
    load_queries_keys(qkv, layout, lines, s, g);
    gather(qkv, layout, lines, 2 * g * s.d + s.d, s.d, L, L, 1, v.data());
    for (int64_t x = 0; x < h * L; ++x) {
      qk[x] = q[x] * scale[0];
      if (!q_r.empty()) {
        q_r[x] = q[x] * scale[1];
        k_r[x] = k[x] * scale[2];
      }
    }
  }
};

// Row i of a block's attention weights for its LANES lines at once, a[j] = softmax_j(logit_ij) (see the top).
template <typename T, int64_t QUERY_CHANNELS>
void attention_row(const Block<T>& x, const T* table, const Sizes& s, int64_t i, T shift, Lanes<T>* a) {
  const int64_t L = s.L, h = query_channels<QUERY_CHANNELS>(s), K = s.K;
  Lanes<T> top;
  for (int64_t j = 0; j < L; ++j) {
    Lanes<T> logit = x.qk[i] * x.k[j] + shift;
    for (int64_t c = 1; c < h; ++c) logit += x.qk[c * L + i] * x.k[c * L + j];
    if (table != nullptr) {
      const int64_t offset = i - j + K - 1, table_columns = 2 * K - 1;
      for (int64_t c = 0; c < h; ++c)
        logit += x.q_r[c * L + i] * table[c * table_columns + offset] +
                 x.k_r[c * L + j] * table[(h + c) * table_columns + 2 * (K - 1) - offset];
    }
    a[j] = logit;
    top = j == 0 || logit > top ? logit : top;
  }
  Lanes<T> total = {};
  for (int64_t j = 0; j < L; ++j) {
    a[j] = exp_nonpositive(a[j] - top);
    total += a[j];
  }
  const Lanes<T> inverse = T(1) / total;
  for (int64_t j = 0; j < L; ++j) a[j] *= inverse;
}

// The inputs of a call, checked.
struct Inputs {
  at::Tensor qkv, scales, shift;
  std::optional<at::Tensor> table;
  int64_t axis;
  Sizes s;
  bool positional() const { return table.has_value(); }

  Inputs(const at::Tensor& qkv_, int64_t axis_, int64_t heads, const at::Tensor& scales_, const at::Tensor& shift_,
         const std::optional<at::Tensor>& table_)
      : qkv(qkv_), scales(scales_.contiguous()), shift(shift_.contiguous()),
        table(table_.has_value() ? std::optional<at::Tensor>(table_->contiguous()) : std::nullopt), axis(axis_) {
    TORCH_CHECK(qkv.dim() == 4, "medt_monai axial attention kernel: qkv must be (N, 2C, H, W)");
    TORCH_CHECK(axis == 0 || axis == 1, "medt_monai axial attention kernel: axis must be 0 or 1");
    TORCH_CHECK(heads > 0 && qkv.size(1) % (4 * heads) == 0,
                "medt_monai axial attention kernel: qkv channels must be a multiple of 4 * heads");
    const int64_t d = qkv.size(1) / (2 * heads), L = qkv.size(2 + axis), others = qkv.size(3 - axis);
    const int64_t K = positional() ? (table->size(1) + 1) / 2 : 0;
    s = {qkv.size(0) * others, others, heads, d / 2, d, L, K};
    for (const auto& t : {qkv, scales, shift}) {
      TORCH_CHECK(t.device().is_cpu(), "medt_monai axial attention kernel: CPU tensors only");
      TORCH_CHECK(t.scalar_type() == qkv.scalar_type(), "medt_monai axial attention kernel: inputs must share a dtype");
    }
    TORCH_CHECK(scales.numel() == 3 * heads && shift.numel() == heads,
                "medt_monai axial attention kernel: scales must be (heads, 3) and shift (heads,)");
    if (positional())
      TORCH_CHECK(table->device().is_cpu() && table->scalar_type() == qkv.scalar_type() && table->dim() == 2 &&
                      table->size(0) == 2 * d && table->size(1) % 2 == 1 && L <= K,
                  "medt_monai axial attention kernel: the relative table must be (2d, 2K - 1) with K >= L, of the "
                  "inputs' dtype");
  }

  // The qkv map alone (the statistics operators), checked the same way: unit scales, no shift, no table.
  static Inputs map_only(const at::Tensor& qkv, int64_t axis, int64_t heads) {
    return Inputs(qkv, axis, heads, at::ones({heads, 3}, qkv.options()), at::zeros({heads}, qkv.options()),
                  std::nullopt);
  }

  template <typename T>
  const T* table_data() const {
    return positional() ? table->data_ptr<T>() : nullptr;
  }
};

std::vector<at::Tensor> attention_forward(const at::Tensor& qkv, int64_t axis, int64_t heads, const at::Tensor& scales,
                                          const at::Tensor& shift, const std::optional<at::Tensor>& table,
                                          const std::optional<at::Tensor>& out_affine_in) {
  const Inputs in(qkv, axis, heads, scales, shift, table);
  const Sizes& s = in.s;
  const bool positional = in.positional(), fused_norm = out_affine_in.has_value();
  const int64_t channels = s.heads * s.d;
  const auto options = qkv.options();
  // channels-last maps give channels-last outputs (ops.py's shape functions say the same)
  const auto format = qkv.is_contiguous(at::MemoryFormat::ChannelsLast) && !qkv.is_contiguous()
                          ? at::MemoryFormat::ChannelsLast
                          : at::MemoryFormat::Contiguous;
  auto values = at::empty({qkv.size(0), channels, qkv.size(2), qkv.size(3)}, options.memory_format(format));
  auto values_position = positional && !fused_norm ? at::empty_like(values) : at::Tensor();
  at::Tensor out_affine;
  if (fused_norm) {
    out_affine = out_affine_in->to(qkv.scalar_type()).contiguous();
    TORCH_CHECK(out_affine.numel() == 3 * channels, "medt_monai axial attention kernel: out_affine must be (3, C)");
  }
  const Layout in_layout(in.qkv, axis), out_layout(values, axis);
  AT_DISPATCH_FLOATING_TYPES(qkv.scalar_type(), "medt_axial_attention_forward", [&] {
    using T = scalar_t;
    const T* table_data = in.table_data<T>();
    const T* affine = fused_norm ? out_affine.data_ptr<T>() : nullptr;  // rows: a, b, c
    dispatch_query_channels(s.h, [&](auto fixed_query_channels) {
      constexpr int64_t QUERY_CHANNELS = decltype(fixed_query_channels)::value;
      const int64_t L = s.L, d = 2 * query_channels<QUERY_CHANNELS>(s), table_columns = 2 * s.K - 1;
      at::parallel_for(0, s.heads * s.blocks(), 1, [&](int64_t begin, int64_t end) {
        Block<T> x(s, positional);
        LanesBuffer<T> a(L), out(L * d), out_position(positional ? L * d : 0);  // out[i * d + c]
        for (int64_t task = begin; task < end; ++task) {
          const int64_t g = task % s.heads, block = task / s.heads;
          const BlockLines lines(s, in_layout, block), out_lines(s, out_layout, block);
          x.load(in.qkv.data_ptr<T>(), in_layout, lines, s, g, in.scales.data_ptr<T>() + 3 * g);
          for (int64_t i = 0; i < L; ++i) {
            attention_row<T, QUERY_CHANNELS>(x, table_data, s, i, in.shift.data_ptr<T>()[g], a.data());
            // sum_j a_ij v_cj and sum_j a_ij r^v_cij, r^v_cij = r_v[c * table_columns - j]
            Registers<T, 2 * QUERY_CHANNELS> sum(d), sum_position(d);
            const T* r_v = positional ? table_data + d * table_columns + i + s.K - 1 : nullptr;
            for (int64_t j = 0; j < L; ++j) {
              const Lanes<T> a_j = a[j];
              for (int64_t c = 0; c < d; ++c) sum[c] += a_j * x.v[c * L + j];
              if (positional)
                for (int64_t c = 0; c < d; ++c) sum_position[c] += a_j * r_v[c * table_columns - j];
            }
            for (int64_t c = 0; c < d; ++c) {
              out[i * d + c] = sum[c];
              if (positional) out_position[i * d + c] = sum_position[c];
            }
          }
          if (fused_norm) {
            const int64_t ch = g * d;
            for (int64_t i = 0; i < L; ++i)
              for (int64_t c = 0; c < d; ++c) {
                Lanes<T>& y = out[i * d + c];
                y = y * affine[ch + c] + affine[2 * channels + ch + c];
                if (positional) y += out_position[i * d + c] * affine[channels + ch + c];
              }
          }
          scatter(out.data(), 1, d, out_layout, out_lines, g * d, d, L, values.data_ptr<T>());
          if (positional && !fused_norm)
            scatter(out_position.data(), 1, d, out_layout, out_lines, g * d, d, L, values_position.data_ptr<T>());
        }
      });
    });
  });
  if (positional && !fused_norm) return {values, values_position};
  return {values};
}

// Gradients of attention_forward's outputs (without out_affine) with respect to qkv, the scales and the relative
// table. The shift has none: softmax does not change when every logit of a row moves by the same amount.
std::vector<at::Tensor> attention_backward(const at::Tensor& grad_values,
                                           const std::optional<at::Tensor>& grad_values_position,
                                           const at::Tensor& qkv, int64_t axis, int64_t heads,
                                           const at::Tensor& scales, const at::Tensor& shift,
                                           const std::optional<at::Tensor>& table) {
  const Inputs in(qkv, axis, heads, scales, shift, table);
  const Sizes& s = in.s;
  const bool positional = in.positional();
  TORCH_CHECK(grad_values_position.has_value() == positional, "grad_values_position must match the inputs");
  const auto grad_out = grad_values.to(qkv.scalar_type());
  const auto grad_out_position = positional ? grad_values_position->to(qkv.scalar_type()) : at::Tensor();
  auto grad_qkv = at::empty_like(qkv);
  // The scales' and the table's gradients sum over all lines and heads: one accumulator per partition of the tasks
  // (LANES lanes per element, no horizontal sums in the inner loops), reduced at the end. Partitions are fixed ranges
  // of tasks, so the result does not depend on how threads are scheduled.
  const int64_t tasks = s.heads * s.blocks();
  const int64_t partitions = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), tasks));
  const int64_t d = s.d, K = s.K, table_columns = positional ? 2 * K - 1 : 0;
  auto grad_scales = at::zeros({partitions, s.heads, 3}, qkv.options().dtype(at::kDouble));
  auto grad_table = at::zeros({partitions, 2 * d, table_columns}, qkv.options());
  const Layout in_layout(in.qkv, axis), grad_layout(grad_qkv, axis), out_layout(grad_out, axis);
  const Layout out_position_layout = positional ? Layout(grad_out_position, axis) : out_layout;
  AT_DISPATCH_FLOATING_TYPES(qkv.scalar_type(), "medt_axial_attention_backward", [&] {
    using T = scalar_t;
    const T* table_data = in.table_data<T>();
    dispatch_query_channels(s.h, [&](auto fixed_query_channels) {
      constexpr int64_t QUERY_CHANNELS = decltype(fixed_query_channels)::value;
      const int64_t L = s.L, h = query_channels<QUERY_CHANNELS>(s), d = 2 * h;
      at::parallel_for(0, partitions, 1, [&](int64_t first, int64_t last) {
        Block<T> x(s, positional);
        LanesBuffer<T> a(L), grad_a(L), go(L * d), go_position(positional ? L * d : 0);  // go[i * d + c]
        // gradients with respect to qk, k (through q.k), v, q_r, k_r, [c * L + i]
        LanesBuffer<T> gq(h * L), gk(h * L), gv(d * L), gq_r(positional ? h * L : 0), gk_r(positional ? h * L : 0);
        LanesBuffer<T> grad_q(h * L), grad_k(h * L);
        LanesBuffer<T> acc_table(2 * d * table_columns);  // [row * table_columns + offset]
        for (int64_t part = first; part < last; ++part) {
          std::fill(acc_table.begin(), acc_table.end(), Lanes<T>{});
          double* acc_scales = grad_scales.data_ptr<double>() + part * s.heads * 3;
          for (int64_t task = part * tasks / partitions; task < (part + 1) * tasks / partitions; ++task) {
            const int64_t g = task % s.heads, block = task / s.heads;
            const T* scale = in.scales.data_ptr<T>() + 3 * g;
            const BlockLines lines(s, in_layout, block), grad_lines(s, grad_layout, block);
            x.load(in.qkv.data_ptr<T>(), in_layout, lines, s, g, scale);
            gather(grad_out.data_ptr<T>(), out_layout, BlockLines(s, out_layout, block), g * d, d, L, 1, d, go.data());
            if (positional)
              gather(grad_out_position.data_ptr<T>(), out_position_layout, BlockLines(s, out_position_layout, block),
                     g * d, d, L, 1, d, go_position.data());
            std::fill(gk.begin(), gk.end(), Lanes<T>{});
            std::fill(gv.begin(), gv.end(), Lanes<T>{});
            std::fill(gk_r.begin(), gk_r.end(), Lanes<T>{});
            for (int64_t i = 0; i < L; ++i) {
              attention_row<T, QUERY_CHANNELS>(x, table_data, s, i, in.shift.data_ptr<T>()[g], a.data());
              const int64_t offset_i = i + K - 1;  // offset of (i, j = 0)
              // dL/da_ij = sum_c go_ic v_cj (+ sum_c gop_ic r^v_cij); dL/dv_cj += go_ic a_ij;
              // dL/dr^v_cij += gop_ic a_ij
              Registers<T, 2 * QUERY_CHANNELS> go_i(d), gop_i(d);
              for (int64_t c = 0; c < d; ++c) {
                go_i[c] = go[i * d + c];
                if (positional) gop_i[c] = go_position[i * d + c];
              }
              // r^v_cij = r_v[c table_columns - j]
              const T* r_v = positional ? table_data + d * table_columns + offset_i : nullptr;
              Lanes<T>* acc_v = acc_table.data() + d * table_columns + offset_i;
              Lanes<T> mean = {};  // sum_j a_ij dL/da_ij
              for (int64_t j = 0; j < L; ++j) {
                const Lanes<T> a_j = a[j];
                Lanes<T> grad = {};
                for (int64_t c = 0; c < d; ++c) {
                  grad += go_i[c] * x.v[c * L + j];
                  gv[c * L + j] += go_i[c] * a_j;
                }
                if (positional)
                  for (int64_t c = 0; c < d; ++c) {
                    grad += gop_i[c] * r_v[c * table_columns - j];
                    acc_v[c * table_columns - j] += gop_i[c] * a_j;
                  }
                grad_a[j] = grad;
                mean += a_j * grad;
              }
              // softmax backward, dL/dlogit_ij = a_ij (dL/da_ij - mean), and on through the logit terms:
              // dL/dqk_ci = sum_j dlogit_ij k_cj, dL/dk_cj += dlogit_ij qk_ci, and with positions dL/dq_r_ci = sum_j
              // dlogit_ij r^q_cij, dL/dk_r_cj += dlogit_ij r^k_cji, dL/dr^q_cij += dlogit_ij q_r_ci, dL/dr^k_cji +=
              // dlogit_ij k_r_cj; r^q_cij = r_q[c table_columns - j], r^k_cji = r_k[c table_columns + j]
              Registers<T, QUERY_CHANNELS> qk_i(h), q_r_i(h), sum(h), sum_r(h);
              for (int64_t c = 0; c < h; ++c) {
                qk_i[c] = x.qk[c * L + i];
                if (positional) q_r_i[c] = x.q_r[c * L + i];
              }
              const T* r_q = positional ? table_data + offset_i : nullptr;
              const T* r_k = positional ? table_data + h * table_columns + 2 * (K - 1) - offset_i : nullptr;
              Lanes<T>* acc_q = acc_table.data() + offset_i;
              Lanes<T>* acc_k = acc_table.data() + h * table_columns + 2 * (K - 1) - offset_i;
              for (int64_t j = 0; j < L; ++j) {
                const Lanes<T> logit = a[j] * (grad_a[j] - mean);
                for (int64_t c = 0; c < h; ++c) {
                  sum[c] += logit * x.k[c * L + j];
                  gk[c * L + j] += logit * qk_i[c];
                }
                if (positional)
                  for (int64_t c = 0; c < h; ++c) {
                    sum_r[c] += logit * r_q[c * table_columns - j];
                    gk_r[c * L + j] += logit * r_k[c * table_columns + j];
                    acc_q[c * table_columns - j] += logit * q_r_i[c];
                    acc_k[c * table_columns + j] += logit * x.k_r[c * L + j];
                  }
              }
              for (int64_t c = 0; c < h; ++c) {
                gq[c * L + i] = sum[c];
                if (positional) gq_r[c * L + i] = sum_r[c];
              }
            }
            // back through the scales: qk = s_qk q, q_r = s_qr q, k_r = s_kr k
            Lanes<T> grad_s_qk = {}, grad_s_qr = {}, grad_s_kr = {};
            for (int64_t e = 0; e < h * L; ++e) {
              grad_s_qk += gq[e] * x.q[e];
              grad_q[e] = gq[e] * scale[0];
              grad_k[e] = gk[e];
              if (positional) {
                grad_s_qr += gq_r[e] * x.q[e];
                grad_s_kr += gk_r[e] * x.k[e];
                grad_q[e] += gq_r[e] * scale[1];
                grad_k[e] += gk_r[e] * scale[2];
              }
            }
            acc_scales[3 * g] += lane_sum<T>(grad_s_qk);
            acc_scales[3 * g + 1] += lane_sum<T>(grad_s_qr);
            acc_scales[3 * g + 2] += lane_sum<T>(grad_s_kr);
            T* grad_qkv_data = grad_qkv.data_ptr<T>();
            scatter(grad_q.data(), L, 1, grad_layout, grad_lines, 2 * g * d, h, L, grad_qkv_data);
            scatter(grad_k.data(), L, 1, grad_layout, grad_lines, 2 * g * d + h, h, L, grad_qkv_data);
            scatter(gv.data(), L, 1, grad_layout, grad_lines, 2 * g * d + d, d, L, grad_qkv_data);
          }
          T* table_grad = grad_table.data_ptr<T>() + part * 2 * d * table_columns;
          for (int64_t e = 0; e < 2 * d * table_columns; ++e) table_grad[e] = lane_sum<T>(acc_table[e]);
        }
      });
    });
  });
  auto grad_scales_total = grad_scales.sum(0).to(qkv.scalar_type());
  if (!positional) return {grad_qkv, grad_scales_total};
  return {grad_qkv, grad_scales_total, grad_table.sum(0)};
}

// Per-line sums behind the closed-form BatchNorm statistics of the logit terms (float64), over all lines b:
//   qk_sum[g] = sum_b (sum_i q_i) . (sum_j k_j) and qk_squares[g] = sum_b <Q Q^T, K K^T> (Q: a line's h x L queries),
//   and with positions q_sum[g, c, i] = sum_b q_ci, q_gram[g, i, c, e] = sum_b q_ci q_ei (k_sum, k_gram alike),
// from which the mean and variance of q_i.k_j, q_i.r^q_ij and k_j.r^k_ji follow (product_moments and position_moments
// in medt_monai/networks/layers/axial_attention.py).
template <typename T>
struct LineGrams {
  // per lane (line) of a block: sums over positions and the h x h Gram matrices of q and k
  LanesBuffer<T> q_sum, k_sum, q_gram, k_gram;
  explicit LineGrams(int64_t h) : q_sum(h), k_sum(h), q_gram(h * h), k_gram(h * h) {}

  template <int64_t QUERY_CHANNELS>
  void compute(const Block<T>& x, const Sizes& s) {
    const int64_t h = query_channels<QUERY_CHANNELS>(s), L = s.L;
    for (int64_t c = 0; c < h; ++c) {
      Lanes<T> qs = {}, ks = {};
      for (int64_t i = 0; i < L; ++i) {
        qs += x.q[c * L + i];
        ks += x.k[c * L + i];
      }
      q_sum[c] = qs;
      k_sum[c] = ks;
      for (int64_t e = 0; e <= c; ++e) {
        Lanes<T> qq = {}, kk = {};
        for (int64_t i = 0; i < L; ++i) {
          qq += x.q[c * L + i] * x.q[e * L + i];
          kk += x.k[c * L + i] * x.k[e * L + i];
        }
        q_gram[c * h + e] = q_gram[e * h + c] = qq;
        k_gram[c * h + e] = k_gram[e * h + c] = kk;
      }
    }
  }
};

template <typename T>
DoubleLanes to_double(const Lanes<T>& x) {
  return __builtin_convertvector(x, DoubleLanes);
}

std::vector<at::Tensor> attention_statistics(const at::Tensor& qkv, int64_t axis, int64_t heads, bool positional) {
  const Inputs in = Inputs::map_only(qkv, axis, heads);
  const Sizes& s = in.s;
  const int64_t tasks = s.heads * s.blocks();
  const int64_t partitions = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), tasks));
  const auto options = qkv.options().dtype(at::kDouble);
  // per partition: [qk_sum | qk_squares] (G each), then q_sum, q_gram, k_sum, k_gram
  const int64_t per_head_lines = s.h * s.L + s.L * s.h * s.h;
  const int64_t size = 2 * s.heads + (positional ? 2 * s.heads * per_head_lines : 0);
  auto partial = at::empty({partitions, size}, options);
  const Layout layout(in.qkv, axis);
  AT_DISPATCH_FLOATING_TYPES(qkv.scalar_type(), "medt_axial_attention_statistics", [&] {
    using T = scalar_t;
    dispatch_query_channels(s.h, [&](auto fixed_query_channels) {
      constexpr int64_t QUERY_CHANNELS = decltype(fixed_query_channels)::value;
      const int64_t h = query_channels<QUERY_CHANNELS>(s), L = s.L;
      at::parallel_for(0, partitions, 1, [&](int64_t first, int64_t last) {
        Block<T> x(s, false);
        LineGrams<T> grams(h);
        std::vector<DoubleLanes> acc(size);  // LANES lanes per element, summed at the end of the partition
        for (int64_t part = first; part < last; ++part) {
          std::fill(acc.begin(), acc.end(), DoubleLanes{});
          for (int64_t task = part * tasks / partitions; task < (part + 1) * tasks / partitions; ++task) {
            const int64_t g = task % s.heads, block = task / s.heads;
            const BlockLines lines(s, layout, block);
            x.load_queries_keys(in.qkv.data_ptr<T>(), layout, lines, s, g);
            grams.template compute<QUERY_CHANNELS>(x, s);
            for (int64_t c = 0; c < h; ++c) {
              acc[g] += to_double<T>(grams.q_sum[c]) * to_double<T>(grams.k_sum[c]);
              for (int64_t e = 0; e < h; ++e)
                acc[s.heads + g] += to_double<T>(grams.q_gram[c * h + e]) * to_double<T>(grams.k_gram[c * h + e]);
            }
            if (!positional) continue;
            for (int64_t which = 0; which < 2; ++which) {  // q, then k
              const LanesBuffer<T>& values = which == 0 ? x.q : x.k;
              DoubleLanes* sums = acc.data() + 2 * s.heads + (which * s.heads + g) * per_head_lines;  // [c * L + i]
              DoubleLanes* gram = sums + h * L;  // [(i * h + c) * h + e], lower triangle (c >= e)
              for (int64_t c = 0; c < h; ++c)
                for (int64_t i = 0; i < L; ++i) {
                  const DoubleLanes value = to_double<T>(values[c * L + i]);
                  sums[c * L + i] += value;
                  for (int64_t e = 0; e <= c; ++e) gram[(i * h + c) * h + e] += value * to_double<T>(values[e * L + i]);
                }
            }
          }
          double* out = partial.data_ptr<double>() + part * size;
          for (int64_t e = 0; e < size; ++e) out[e] = lane_sum<double>(acc[e]);
        }
      });
    });
  });
  const auto total = partial.sum(0);
  std::vector<at::Tensor> out = {total.narrow(0, 0, s.heads).clone(), total.narrow(0, s.heads, s.heads).clone()};
  if (positional) {
    for (int64_t which = 0; which < 2; ++which) {
      const auto block = total.narrow(0, 2 * s.heads + which * s.heads * per_head_lines, s.heads * per_head_lines)
                             .view({s.heads, per_head_lines});
      out.push_back(block.narrow(1, 0, s.h * s.L).reshape({s.heads, s.h, s.L}).contiguous());
      // the Gram matrices' lower triangles (the upper ones are zero), made symmetric
      const auto lower = block.narrow(1, s.h * s.L, s.L * s.h * s.h).reshape({s.heads, s.L, s.h, s.h});
      out.push_back(lower + lower.tril(-1).transpose(-1, -2));
    }
  }
  return out;
}

// Gradient of attention_statistics' outputs with respect to qkv (zero in the v channels), given the gradients of
// qk_sum, qk_squares (G,) and, with positions, of q_sum (G, h, L), q_gram (G, L, h, h), k_sum, k_gram.
at::Tensor attention_statistics_backward(const at::Tensor& qkv, int64_t axis, int64_t heads,
                                         const at::Tensor& grad_qk_sum, const at::Tensor& grad_qk_squares,
                                         const std::optional<at::Tensor>& grad_q_sum,
                                         const std::optional<at::Tensor>& grad_q_gram,
                                         const std::optional<at::Tensor>& grad_k_sum,
                                         const std::optional<at::Tensor>& grad_k_gram) {
  const Inputs in = Inputs::map_only(qkv, axis, heads);
  const Sizes& s = in.s;
  const bool positional = grad_q_sum.has_value();
  const auto as_dtype = [&](const at::Tensor& t) { return t.to(qkv.scalar_type()).contiguous(); };
  const auto g_sum = as_dtype(grad_qk_sum), g_squares = as_dtype(grad_qk_squares);
  // d/dq_i of sum_i <grad_gram_i, q_i q_i^T> = (grad_gram_i + grad_gram_i^T) q_i: symmetrise once
  const auto symmetric = [&](const std::optional<at::Tensor>& t) { return as_dtype(*t + t->transpose(-1, -2)); };
  at::Tensor g_q_sum, g_q_gram, g_k_sum, g_k_gram;
  if (positional) {
    g_q_sum = as_dtype(*grad_q_sum), g_k_sum = as_dtype(*grad_k_sum);
    g_q_gram = symmetric(grad_q_gram), g_k_gram = symmetric(grad_k_gram);
  }
  auto grad_qkv = at::zeros_like(qkv);  // the v channels stay zero
  const Layout in_layout(in.qkv, axis), grad_layout(grad_qkv, axis);
  AT_DISPATCH_FLOATING_TYPES(qkv.scalar_type(), "medt_axial_attention_statistics_backward", [&] {
    using T = scalar_t;
    dispatch_query_channels(s.h, [&](auto fixed_query_channels) {
      constexpr int64_t QUERY_CHANNELS = decltype(fixed_query_channels)::value;
      const int64_t h = query_channels<QUERY_CHANNELS>(s), L = s.L, d = 2 * h;
      at::parallel_for(0, s.heads * s.blocks(), 1, [&](int64_t begin, int64_t end) {
        Block<T> x(s, false);
        LineGrams<T> grams(h);
        LanesBuffer<T> grad_q(h * L), grad_k(h * L);
        for (int64_t task = begin; task < end; ++task) {
          const int64_t g = task % s.heads, block = task / s.heads;
          const BlockLines lines(s, in_layout, block), grad_lines(s, grad_layout, block);
          x.load_queries_keys(in.qkv.data_ptr<T>(), in_layout, lines, s, g);
          grams.template compute<QUERY_CHANNELS>(x, s);
          const T a = g_sum.data_ptr<T>()[g], b = 2 * g_squares.data_ptr<T>()[g];
          for (int64_t c = 0; c < h; ++c)
            for (int64_t i = 0; i < L; ++i) {
              // sum_b (sum_i q_i).(sum_j k_j) and sum_b <Q Q^T, K K^T>
              Lanes<T> gq = a * grams.k_sum[c], gk = a * grams.q_sum[c];
              for (int64_t e = 0; e < h; ++e) {
                gq += b * grams.k_gram[c * h + e] * x.q[e * L + i];
                gk += b * grams.q_gram[c * h + e] * x.k[e * L + i];
              }
              if (positional) {
                const T* q_gram = g_q_gram.data_ptr<T>() + ((g * L + i) * h + c) * h;
                const T* k_gram = g_k_gram.data_ptr<T>() + ((g * L + i) * h + c) * h;
                gq += g_q_sum.data_ptr<T>()[(g * h + c) * L + i];
                gk += g_k_sum.data_ptr<T>()[(g * h + c) * L + i];
                for (int64_t e = 0; e < h; ++e) {
                  gq += q_gram[e] * x.q[e * L + i];
                  gk += k_gram[e] * x.k[e * L + i];
                }
              }
              grad_q[c * L + i] = gq;
              grad_k[c * L + i] = gk;
            }
          T* out = grad_qkv.data_ptr<T>();
          scatter(grad_q.data(), L, 1, grad_layout, grad_lines, 2 * g * d, h, L, out);
          scatter(grad_k.data(), L, 1, grad_layout, grad_lines, 2 * g * d + h, h, L, out);
        }
      });
    });
  });
  return grad_qkv;
}

}  // namespace

TORCH_LIBRARY(medt_monai, m) {
  m.def(
      "axial_attention_forward(Tensor qkv, int axis, int heads, Tensor scales, Tensor shift, Tensor? table, "
      "Tensor? out_affine) -> Tensor[]");
  m.def(
      "axial_attention_backward(Tensor grad_values, Tensor? grad_values_position, Tensor qkv, int axis, int heads, "
      "Tensor scales, Tensor shift, Tensor? table) -> Tensor[]");
  m.def("axial_attention_statistics(Tensor qkv, int axis, int heads, bool positional) -> Tensor[]");
  m.def(
      "axial_attention_statistics_backward(Tensor qkv, int axis, int heads, Tensor grad_qk_sum, "
      "Tensor grad_qk_squares, Tensor? grad_q_sum, Tensor? grad_q_gram, Tensor? grad_k_sum, Tensor? grad_k_gram) "
      "-> Tensor");
}

TORCH_LIBRARY_IMPL(medt_monai, CPU, m) {
  m.impl("axial_attention_forward", &attention_forward);
  m.impl("axial_attention_backward", &attention_backward);
  m.impl("axial_attention_statistics", &attention_statistics);
  m.impl("axial_attention_statistics_backward", &attention_statistics_backward);
}

// The LSTM scan of pixelrnn/lstm_scan.py as one CPU kernel, forward and backward.
//
// Same recurrence, same layout: maps are (H, W, B, D, F) contiguous, a step
// updates the cells of one row ("rows") or one diagonal ("diagonals"), each
// cell's LSTM state lives in a slot (its column, or its row). For each image at
// each (direction, slot) site a step does the state-to-state product, the gates
// and the cell update in one pass over a few cache lines. Threads share the work without
// meeting at a barrier every step: each runs the whole recurrence for its own slice of the
// batch (images are independent), so a thread that another process delays holds up only
// itself. With fewer images than threads the sites of each step run in parallel instead
// (at::parallel_for per step). The backward gathers each cell's
// hidden-state gradient from the cells that read it one step later, so sites
// never write to shared memory except through per-thread weight-gradient buffers.
//
// Supported plans: "rows" with any offsets; "diagonals" with offsets in {0, -1}
// (every read is then the previous step's cell, the initial state or padding).
// The Python wrapper checks this before calling.

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

namespace {

// exp, sigmoid and tanh written so that compilers vectorise them (no libm call).
template <typename T> struct ExpLimits;
template <> struct ExpLimits<float> {
  using Int = int32_t;
  static constexpr int mantissa = 23, bias = 127;
  static constexpr float lo = -87.0f, hi = 88.0f, round = 12582912.0f;  // 1.5 * 2^23
};
template <> struct ExpLimits<double> {
  using Int = int64_t;
  static constexpr int mantissa = 52, bias = 1023;
  static constexpr double lo = -708.0, hi = 709.0, round = 6755399441055744.0;  // 1.5 * 2^52
};

template <typename T> inline T exp_approx(T x) {
  using L = ExpLimits<T>;
  x = x < L::lo ? L::lo : (x > L::hi ? L::hi : x);
  const T n = (x * T(1.4426950408889634) + L::round) - L::round;  // round(x / ln 2)
  const T r = x - n * T(0.693145751953125) - n * T(1.428606820309417232e-6);
  // Taylor polynomial of exp(r), |r| <= ln(2) / 2, by Horner: degree 7 for float, 13 for double.
  constexpr int degree = std::is_same<T, float>::value ? 7 : 13;
  constexpr double inverse_factorial[14] = {1.0, 1.0, 1.0 / 2, 1.0 / 6, 1.0 / 24, 1.0 / 120, 1.0 / 720,
                                            1.0 / 5040, 1.0 / 40320, 1.0 / 362880, 1.0 / 3628800,
                                            1.0 / 39916800, 1.0 / 479001600, 1.0 / 6227020800};
  T p = T(inverse_factorial[degree]);
  for (int k = degree - 1; k >= 0; --k) p = p * r + T(inverse_factorial[k]);
  typename L::Int bits = (static_cast<typename L::Int>(n) + L::bias) << L::mantissa;
  T scale;
  std::memcpy(&scale, &bits, sizeof(T));
  return p * scale;
}
template <typename T> inline T sigmoid(T x) { return T(1) / (T(1) + exp_approx(-x)); }
template <typename T> inline T tanh_approx(T x) { return T(2) / (T(1) + exp_approx(T(-2) * x)) - T(1); }

constexpr int64_t kZero = -1, kInit = -2, kNone = -3;  // padding / initial state / no cell
constexpr int kMaxTaps = 16;  // recurrent taps per cell (the wrapper checks)

// Where one (step, slot, direction) site reads and writes, the same for every image.
struct Site {
  int64_t direction;
  int64_t cell;                   // the cell updated here, flat r * W + c
  int64_t previous;               // the cell its slot held before (kInit at the slot's start)
  int64_t next;                   // the slot's cell at the next step, or kNone
  int64_t reads[kMaxTaps];        // per tap: the cell whose hidden state is read, kZero or kInit
  int64_t readers[kMaxTaps];      // per tap: the cell of the next step that reads this one, or kNone
};

struct Geometry {
  bool rows;
  int64_t height, width, batch, dirs, hidden;
  std::vector<int64_t> offsets;
  std::vector<bool> mirrored;

  int64_t steps() const { return rows ? height : height + width - 1; }
  int64_t slots() const { return rows ? width : height; }
  int64_t first(int64_t t) const { return rows ? 0 : std::max<int64_t>(0, t - width + 1); }
  int64_t last(int64_t t) const { return rows ? width - 1 : std::min<int64_t>(height - 1, t); }
  int64_t count(int64_t t) const { return last(t) - first(t) + 1; }
  bool active(int64_t t, int64_t slot) const {
    return t >= 0 && t < steps() && slot >= first(t) && slot <= last(t);
  }
  int64_t cell(int64_t t, int64_t slot, int64_t d) const {
    if (rows) return t * width + slot;
    const int64_t c = t - slot;
    return slot * width + (mirrored[d] ? width - 1 - c : c);
  }
  // The cell whose state slot `slot` holds before step t, or kZero / kInit.
  int64_t previous(int64_t t, int64_t slot, int64_t d) const {
    if (slot < 0 || slot >= slots()) return kZero;
    return active(t - 1, slot) ? cell(t - 1, slot, d) : kInit;
  }
  // Site `index` of step t: direction index / count(t), slot first(t) + index % count(t).
  Site site(int64_t t, int64_t index) const {
    const int64_t d = index / count(t), slot = first(t) + index % count(t);
    Site s{d, cell(t, slot, d), previous(t, slot, d), active(t + 1, slot) ? cell(t + 1, slot, d) : kNone, {}, {}};
    for (size_t k = 0; k < offsets.size(); ++k) {
      s.reads[k] = previous(t, slot + offsets[k], d);
      const int64_t reader = slot - offsets[k];
      s.readers[k] = active(t + 1, reader) ? cell(t + 1, reader, d) : kNone;
    }
    return s;
  }
  // Offset into a (H, W, B, D, F) map of (cell, image b, direction d).
  int64_t at(int64_t cell, int64_t b, int64_t d, int64_t features) const {
    return ((cell * batch + b) * dirs + d) * features;
  }
};

// Per-site scratch vectors: on the stack, sized at compile time, for the common
// hidden sizes (the inner loops then unroll and keep the gates in registers).
template <typename T, int N> struct Scratch {
  alignas(64) T data[N];
  T* get(int64_t) { return data; }
};
template <typename T> struct Scratch<T, 0> {
  std::vector<T> data;
  T* get(int64_t n) { data.resize(n); return data.data(); }
};

// Calls f(std::integral_constant<int, h>) for the hidden sizes compiled as
// constants, f(std::integral_constant<int, 0>) for any other.
template <typename F> void with_hidden(int64_t hidden, F&& f) {
  switch (hidden) {
    case 8: f(std::integral_constant<int, 8>()); break;
    case 16: f(std::integral_constant<int, 16>()); break;
    case 32: f(std::integral_constant<int, 32>()); break;
    case 64: f(std::integral_constant<int, 64>()); break;
    default: f(std::integral_constant<int, 0>());
  }
}

// Copies the K hidden states that site s reads for image b into r (K h values, zeros for padding).
template <typename T>
inline void gather_reads(const Geometry& g, const Site& s, int64_t h, int64_t b, int64_t d,
                         const T* out, const T* h0, T* r) {
  for (size_t k = 0; k < g.offsets.size(); ++k) {
    if (s.reads[k] == kZero)
      std::memset(r + k * h, 0, h * sizeof(T));
    else
      std::memcpy(r + k * h, s.reads[k] == kInit ? h0 + d * h : out + g.at(s.reads[k], b, d, h), h * sizeof(T));
  }
}

// Runs body(begin, end) over the sites of step t: split across threads (`parallel_sites`), or
// all in this thread (inside a thread's slice of the batch).
template <typename F> void over_sites(const Geometry& g, int64_t t, bool parallel_sites, F&& body) {
  if (parallel_sites)
    at::parallel_for(0, g.dirs * g.count(t), 1, body);
  else
    body(0, g.dirs * g.count(t));
}

// Runs step(t, b0, b1, parallel_sites) for every step (last to first for the backward): each
// thread over its images [b0, b1) when there are at least as many images as threads, else
// step by step with the sites in parallel.
template <typename Step> void run_steps(const Geometry& g, bool backward, Step&& step) {
  const int64_t n = g.steps();
  if (g.batch >= at::get_num_threads() && at::get_num_threads() > 1) {
    at::parallel_for(0, g.batch, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t k = 0; k < n; ++k) step(backward ? n - 1 - k : k, b0, b1, false);
    });
  } else {
    for (int64_t k = 0; k < n; ++k) step(backward ? n - 1 - k : k, 0, g.batch, true);
  }
}

template <typename T, int FixedH>
void forward_step(const Geometry& g, int64_t t, int64_t b0, int64_t b1, bool parallel_sites,
                  const T* gates_in, const T* weight, const T* h0, const T* c0, T* out, T* act,
                  T* cell_state) {
  const int64_t h = FixedH ? FixedH : g.hidden, G = 4 * h, K = g.offsets.size();
  over_sites(g, t, parallel_sites, [&](int64_t begin, int64_t end) {
    Scratch<T, 4 * FixedH> z_buffer, z2_buffer;
    std::vector<T> read_buffer(K * h);
    // __restrict__ here and below: no two of these pointers alias, so the compiler
    // keeps the sums in registers and vectorises the loops over features.
    T* __restrict__ z = z_buffer.get(G);
    T* __restrict__ z2 = z2_buffer.get(G);
    T* __restrict__ r = read_buffer.data();
    for (int64_t index = begin; index < end; ++index) {
      const Site s = g.site(t, index);
      const int64_t d = s.direction;
      const T* __restrict__ w = weight + d * K * h * G;  // (K h, 4h) of direction d
      for (int64_t b = b0; b < b1; ++b) {
        gather_reads(g, s, h, b, d, out, h0, r);
        // z = gates_in + r W, in two interleaved sums (independent chains of multiply-adds).
        const T* __restrict__ z_in = gates_in + g.at(s.cell, b, d, G);
        for (int64_t j = 0; j < G; ++j) z[j] = z_in[j], z2[j] = T(0);
        int64_t m = 0;
        for (; m + 1 < K * h; m += 2) {
          const T r0 = r[m], r1 = r[m + 1];
          for (int64_t j = 0; j < G; ++j) {
            z[j] += r0 * w[m * G + j];
            z2[j] += r1 * w[(m + 1) * G + j];
          }
        }
        if (m < K * h)
          for (int64_t j = 0; j < G; ++j) z[j] += r[m] * w[m * G + j];
        T* __restrict__ a = act + g.at(s.cell, b, d, G);  // i, f, o, g after their nonlinearities
        for (int64_t j = 0; j < 3 * h; ++j) a[j] = sigmoid(z[j] + z2[j]);
        for (int64_t j = 3 * h; j < G; ++j) a[j] = tanh_approx(z[j] + z2[j]);
        const T* __restrict__ c_prev = s.previous == kInit ? c0 + d * h : cell_state + g.at(s.previous, b, d, h);
        T* __restrict__ c_new = cell_state + g.at(s.cell, b, d, h);
        T* __restrict__ h_new = out + g.at(s.cell, b, d, h);
        for (int64_t j = 0; j < h; ++j) {
          c_new[j] = a[h + j] * c_prev[j] + a[j] * a[3 * h + j];
          h_new[j] = a[2 * h + j] * tanh_approx(c_new[j]);
        }
      }
    }
  });
}

// One step of the backward pass; `carry` holds dc * f of each cell (the cell-state
// gradient it passes to its slot's previous state). Weight and initial-state
// gradients go to per-thread buffers (`partial`, one row per thread).
// weight_t: (D, K, 4h, h), the transposed blocks of the state-to-state weight.
template <typename T, int FixedH>
void backward_step(const Geometry& g, int64_t t, int64_t b0, int64_t b1, bool parallel_sites,
                   const T* grad_out, const T* act, const T* cell_state, const T* out,
                   const T* weight_t, const T* h0, const T* c0, T* grad_gates, T* carry, T* partial,
                   int64_t partial_size) {
  const int64_t h = FixedH ? FixedH : g.hidden, G = 4 * h, K = g.offsets.size();
  const int64_t weight_size = g.dirs * K * h * G;
  over_sites(g, t, parallel_sites, [&](int64_t begin, int64_t end) {
    T* grad_weight = partial + at::get_thread_num() * partial_size;
    T* grad_h0 = grad_weight + weight_size;
    T* grad_c0 = grad_h0 + g.dirs * h;
    Scratch<T, FixedH> acc_buffer[4];
    Scratch<T, 4 * FixedH> dz_buffer;
    std::vector<T> read_buffer(K * h);
    T* __restrict__ acc0 = acc_buffer[0].get(h);  // four partial sums of dh
    T* __restrict__ acc1 = acc_buffer[1].get(h);
    T* __restrict__ acc2 = acc_buffer[2].get(h);
    T* __restrict__ acc3 = acc_buffer[3].get(h);
    T* __restrict__ dz = dz_buffer.get(G);
    T* __restrict__ r = read_buffer.data();
    for (int64_t index = begin; index < end; ++index) {
      const Site s = g.site(t, index);
      const int64_t d = s.direction;
      T* __restrict__ gw = grad_weight + d * K * h * G;
      for (int64_t b = b0; b < b1; ++b) {
        // dh: this cell's output gradient plus what the cells of step t + 1 that
        // read it pass back; four partial sums keep the multiply-adds independent.
        for (int64_t m = 0; m < h; ++m) acc0[m] = acc1[m] = acc2[m] = acc3[m] = T(0);
        for (int64_t k = 0; k < K; ++k) {
          if (s.readers[k] == kNone) continue;
          const T* __restrict__ dz_reader = grad_gates + g.at(s.readers[k], b, d, G);
          const T* __restrict__ wk = weight_t + (d * K + k) * G * h;
          for (int64_t j = 0; j < G; j += 4)
            for (int64_t m = 0; m < h; ++m) {
              acc0[m] += dz_reader[j] * wk[j * h + m];
              acc1[m] += dz_reader[j + 1] * wk[(j + 1) * h + m];
              acc2[m] += dz_reader[j + 2] * wk[(j + 2) * h + m];
              acc3[m] += dz_reader[j + 3] * wk[(j + 3) * h + m];
            }
        }
        const T* __restrict__ grad_here = grad_out + g.at(s.cell, b, d, h);
        const T* __restrict__ a = act + g.at(s.cell, b, d, G);  // i, f, o, g after their nonlinearities
        const T* __restrict__ c = cell_state + g.at(s.cell, b, d, h);
        const T* __restrict__ carry_next = s.next == kNone ? nullptr : carry + g.at(s.next, b, d, h);
        const T* __restrict__ c_prev = s.previous == kInit ? c0 + d * h : cell_state + g.at(s.previous, b, d, h);
        T* __restrict__ carry_here = carry + g.at(s.cell, b, d, h);
        for (int64_t m = 0; m < h; ++m) {
          const T dh = grad_here[m] + ((acc0[m] + acc1[m]) + (acc2[m] + acc3[m]));
          const T tc = tanh_approx(c[m]);
          const T i = a[m], f = a[h + m], o = a[2 * h + m], gg = a[3 * h + m];
          const T dc = (carry_next ? carry_next[m] : T(0)) + dh * o * (T(1) - tc * tc);
          dz[m] = dc * gg * i * (T(1) - i);
          dz[h + m] = dc * c_prev[m] * f * (T(1) - f);
          dz[2 * h + m] = dh * tc * o * (T(1) - o);
          dz[3 * h + m] = dc * i * (T(1) - gg * gg);
          carry_here[m] = dc * f;
        }
        std::memcpy(grad_gates + g.at(s.cell, b, d, G), dz, G * sizeof(T));
        if (s.previous == kInit)
          for (int64_t m = 0; m < h; ++m) grad_c0[d * h + m] += carry_here[m];
        gather_reads(g, s, h, b, d, out, h0, r);
        for (int64_t m = 0; m < K * h; ++m) {
          const T rm = r[m];
          for (int64_t j = 0; j < G; ++j) gw[m * G + j] += rm * dz[j];
        }
        for (int64_t k = 0; k < K; ++k)
          if (s.reads[k] == kInit)
            for (int64_t j = 0; j < G; ++j)
              for (int64_t m = 0; m < h; ++m)
                grad_h0[d * h + m] += dz[j] * weight_t[((d * K + k) * G + j) * h + m];
      }
    }
  });
}

Geometry geometry(const torch::Tensor& map, int64_t hidden, bool rows,
                  const std::vector<int64_t>& offsets, const std::vector<bool>& mirrored) {
  TORCH_CHECK(map.dim() == 5 && map.is_contiguous() && map.device().is_cpu(),
              "lstm_scan kernel: expected a contiguous CPU map (H, W, B, D, F)");
  TORCH_CHECK((int64_t)mirrored.size() == map.size(3), "lstm_scan kernel: one mirrored flag per direction");
  return Geometry{rows, map.size(0), map.size(1), map.size(2), map.size(3), hidden, offsets, mirrored};
}

std::vector<torch::Tensor> scan_forward(torch::Tensor gates_in, torch::Tensor weight, torch::Tensor h0,
                                        torch::Tensor c0, bool rows, std::vector<int64_t> offsets,
                                        std::vector<bool> mirrored) {
  TORCH_CHECK(gates_in.size(4) % 4 == 0, "lstm_scan kernel: gates must be 4h wide");
  TORCH_CHECK((int64_t)offsets.size() <= kMaxTaps, "lstm_scan kernel: too many taps");
  const auto state = geometry(gates_in, gates_in.size(4) / 4, rows, offsets, mirrored);
  weight = weight.contiguous(), h0 = h0.contiguous(), c0 = c0.contiguous();
  auto shape = gates_in.sizes().vec();
  shape[4] = state.hidden;
  auto out = torch::empty(shape, gates_in.options());
  auto cell_state = torch::empty(shape, gates_in.options());
  auto act = torch::empty_like(gates_in);
  AT_DISPATCH_FLOATING_TYPES(gates_in.scalar_type(), "lstm_scan_forward", [&] {
    with_hidden(state.hidden, [&](auto fixed) {
      run_steps(state, false, [&](int64_t t, int64_t b0, int64_t b1, bool parallel_sites) {
        forward_step<scalar_t, decltype(fixed)::value>(
            state, t, b0, b1, parallel_sites, gates_in.data_ptr<scalar_t>(), weight.data_ptr<scalar_t>(),
            h0.data_ptr<scalar_t>(), c0.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
            act.data_ptr<scalar_t>(), cell_state.data_ptr<scalar_t>());
      });
    });
  });
  return {out, act, cell_state};
}

std::vector<torch::Tensor> scan_backward(torch::Tensor grad_out, torch::Tensor act, torch::Tensor cell_state,
                                         torch::Tensor out, torch::Tensor weight, torch::Tensor h0,
                                         torch::Tensor c0, bool rows, std::vector<int64_t> offsets,
                                         std::vector<bool> mirrored) {
  grad_out = grad_out.contiguous(), h0 = h0.contiguous(), c0 = c0.contiguous();
  const auto g = geometry(grad_out, grad_out.size(4), rows, offsets, mirrored);
  const int64_t h = g.hidden, K = offsets.size();
  TORCH_CHECK((int64_t)offsets.size() <= kMaxTaps, "lstm_scan kernel: too many taps");
  // (D, K, 4h, h): block k of the weight, transposed.
  auto weight_t = weight.reshape({g.dirs, K, h, 4 * h}).transpose(2, 3).contiguous();
  auto grad_gates = torch::empty_like(act);
  auto carry = torch::empty_like(cell_state);
  const int64_t partial_size = g.dirs * K * h * 4 * h + 2 * g.dirs * h;
  auto partial = torch::zeros({at::get_num_threads(), partial_size}, act.options());
  AT_DISPATCH_FLOATING_TYPES(act.scalar_type(), "lstm_scan_backward", [&] {
    with_hidden(g.hidden, [&](auto fixed) {
      run_steps(g, true, [&](int64_t t, int64_t b0, int64_t b1, bool parallel_sites) {
        backward_step<scalar_t, decltype(fixed)::value>(
            g, t, b0, b1, parallel_sites, grad_out.data_ptr<scalar_t>(), act.data_ptr<scalar_t>(),
            cell_state.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), weight_t.data_ptr<scalar_t>(),
            h0.data_ptr<scalar_t>(), c0.data_ptr<scalar_t>(), grad_gates.data_ptr<scalar_t>(),
            carry.data_ptr<scalar_t>(), partial.data_ptr<scalar_t>(), partial_size);
      });
    });
  });
  auto total = partial.sum(0);
  const int64_t weight_size = g.dirs * K * h * 4 * h;
  auto grad_weight = total.narrow(0, 0, weight_size).view(weight.sizes());
  auto grad_h0 = total.narrow(0, weight_size, g.dirs * h).view(h0.sizes());
  auto grad_c0 = total.narrow(0, weight_size + g.dirs * h, g.dirs * h).view(c0.sizes());
  return {grad_gates, grad_weight, grad_h0, grad_c0};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &scan_forward, "LSTM scan forward: (out, activations, cell states)");
  m.def("backward", &scan_backward, "LSTM scan backward: (grad gates, grad weight, grad h0, grad c0)");
}

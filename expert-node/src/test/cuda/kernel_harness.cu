// The BF16 tensor-core kernels of expert_ffn.cu outside the JVM, on a GPU: results against a
// float64 reference on odd and real shapes, bit-exact batch invariance (rows alone against the
// same rows in a batch of 300), then device time per expert FFN (CUDA graph of 16 experts in
// turn, median of 15 replays) for 1 to 512 rows and for each product alone. The figures of
// docs/PERFORMANCE.md "Measured steps" came from it; `moe bench-expert` measures the same
// kernels through the Java backend.
//
//   nvcc -O3 -arch=sm_90 -o /tmp/kernel_harness expert-node/src/test/cuda/kernel_harness.cu
//   /tmp/kernel_harness        # EXPERTS=1: weights resident in L2; SKIPCHECK=1: timing only
//
// The slice geometry below mirrors io.moecluster.expert.cuda.LaunchPlan.geometry.
#include "../../main/cuda/expert_ffn.cu"
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <cmath>
#include <vector>
#include <random>
#include <algorithm>
#include <cuda_runtime.h>
#define CK(x) do { cudaError_t ce_ = (x); if (ce_ != cudaSuccess) { printf("CUDA %s at %s:%d\n", cudaGetErrorString(ce_), __FILE__, __LINE__); exit(1);} } while (0)

static uint16_t tobf16(float f) { uint32_t u; memcpy(&u, &f, 4); u += 0x7fff + ((u >> 16) & 1); return u >> 16; }
static float frombf16(uint16_t b) { uint32_t u = (uint32_t) b << 16; float f; memcpy(&f, &u, 4); return f; }
#define SLICE_BLOCKS 4
static void slices(int K, int& S, int& SKB) { int nkb = (K + 31) / 32; int s = std::min((nkb + SLICE_BLOCKS - 1) / SLICE_BLOCKS, TC_MAX_SLICES); SKB = (nkb + s - 1) / s; S = (nkb + SKB - 1) / SKB; }
static TcGeometry geom(int K) { TcGeometry g; g.nkb = (K + 31) / 32; int S, SKB; slices(K, S, SKB); g.S = S; g.SKB = SKB; int ng = std::min((g.nkb + 31) / 32, S); g.SPG = (S + ng - 1) / ng; g.NG = (S + g.SPG - 1) / g.SPG; return g; }
static uint16_t *dxs, *dhs; static int MASK = 3;
static const int GU_SMEM = TC_GU_STAGES * (TC_GU_WF * 32 * 4 + TC_GU_WT * TC_GU_TT * 8 * 8) * 16;
static const int DN_SMEM = TC_DN_STAGES * (TC_DN_WF * 32 * 4 + TC_DN_WT * TC_DN_TT * 8 * 8) * 16;

struct Expert { int H, F; uint16_t *w1, *w3, *w2; std::vector<uint16_t> h1, h3, h2; };
static float *dx, *dh, *dy, *dpart; static int* dcount;

static Expert make(int H, int F, std::mt19937& rng) {
  Expert e; e.H = H; e.F = F; std::uniform_real_distribution<float> u(-1, 1);
  float sc1 = 1 / sqrtf(H), sc2 = 1 / sqrtf(F);
  e.h1.resize((size_t) F * H); e.h3.resize((size_t) F * H); e.h2.resize((size_t) H * F);
  for (auto& v : e.h1) v = tobf16(u(rng) * sc1 * 2);
  for (auto& v : e.h3) v = tobf16(u(rng) * sc1 * 2);
  for (auto& v : e.h2) v = tobf16(u(rng) * sc2 * 2);
  CK(cudaMalloc(&e.w1, e.h1.size() * 2)); CK(cudaMalloc(&e.w3, e.h3.size() * 2)); CK(cudaMalloc(&e.w2, e.h2.size() * 2));
  CK(cudaMemcpy(e.w1, e.h1.data(), e.h1.size() * 2, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(e.w3, e.h3.data(), e.h3.size() * 2, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(e.w2, e.h2.data(), e.h2.size() * 2, cudaMemcpyHostToDevice));
  return e;
}

static void launch(const Expert& e, int n, cudaStream_t st, const float* x = nullptr, float* y = nullptr) {
  if (!x) x = dx; if (!y) y = dy;
  int H = e.H, F = e.F; int vecH = H % 8 == 0, vecF = F % 8 == 0;
  if (n <= TC_DECODE_MAX_ROWS) {
    int S, SKB; slices(H, S, SKB);
    if (MASK & 1) moe_gate_up_bf16_decode<<<(F + 15) / 16, S * 32, 0, st>>>(e.w1, e.w3, x, dh, n, F, H, vecH, geom(H));
    slices(F, S, SKB);
    if (MASK & 2) moe_down_bf16_decode<<<(H + 15) / 16, S * 32, 0, st>>>(e.w2, dh, y, n, H, F, vecF, geom(F));
  } else {
    int nkb = (H + 31) / 32;
    if (MASK & 1) moe_split_bf16<<<(n * nkb * 4 + 255) / 256, 256, 0, st>>>(x, dxs, n, H, vecH, geom(H));
    int btg = TC_GU_WT * TC_GU_TT * 8, btd = TC_DN_WT * TC_DN_TT * 8;
    if (MASK & 1) moe_gate_up_bf16_prefill<<<dim3((F + TC_GU_WF * 16 - 1) / (TC_GU_WF * 16), (n + btg - 1) / btg, geom(H).NG), TC_GU_WF * TC_GU_WT * 32, GU_SMEM, st>>>(e.w1, e.w3, dxs, dhs, dpart, dcount, n, F, H, vecH, geom(H));
    if (MASK & 2) moe_down_bf16_prefill<<<dim3((H + TC_DN_WF * 32 - 1) / (TC_DN_WF * 32), (n + btd - 1) / btd, geom(F).NG), TC_DN_WF * TC_DN_WT * 32, DN_SMEM, st>>>(e.w2, dhs, y, dpart, dcount, n, H, F, vecF, geom(F));
  }
  CK(cudaGetLastError());
}

static std::vector<float> run(const Expert& e, const std::vector<float>& x, int n) {
  CK(cudaMemcpy(dx, x.data(), x.size() * 4, cudaMemcpyHostToDevice));
  CK(cudaMemset(dy, 0xff, (size_t) n * e.H * 4));  // poison (NaN)
  launch(e, n, 0); CK(cudaDeviceSynchronize());
  std::vector<float> y((size_t) n * e.H); CK(cudaMemcpy(y.data(), dy, y.size() * 4, cudaMemcpyDeviceToHost));
  return y;
}

static std::vector<double> ref(const Expert& e, const std::vector<float>& x, int n) {
  int H = e.H, F = e.F; std::vector<double> y((size_t) n * H), h(F);
  for (int t = 0; t < n; t++) {
    for (int i = 0; i < F; i++) { double g = 0, u = 0;
      for (int k = 0; k < H; k++) { g += (double) frombf16(e.h1[(size_t) i * H + k]) * x[(size_t) t * H + k]; u += (double) frombf16(e.h3[(size_t) i * H + k]) * x[(size_t) t * H + k]; }
      h[i] = g / (1 + exp(-g)) * u; }
    for (int j = 0; j < H; j++) { double s = 0; for (int i = 0; i < F; i++) s += (double) frombf16(e.h2[(size_t) j * F + i]) * h[i]; y[(size_t) t * H + j] = s; }
  }
  return y;
}

int main(int argc, char** argv) {
  cudaDeviceProp prop; CK(cudaGetDeviceProperties(&prop, 0)); printf("device %s, %d SMs\n", prop.name, prop.multiProcessorCount);
  CK(cudaMalloc(&dx, 64 << 20)); CK(cudaMalloc(&dh, 64 << 20)); CK(cudaMalloc(&dy, 64 << 20)); CK(cudaMalloc(&dpart, 64 << 20));
  CK(cudaMalloc(&dcount, 1 << 20)); CK(cudaMalloc(&dxs, 64 << 20)); CK(cudaMalloc(&dhs, 64 << 20));
  CK(cudaFuncSetAttribute(moe_gate_up_bf16_prefill, cudaFuncAttributeMaxDynamicSharedMemorySize, GU_SMEM));
  CK(cudaFuncSetAttribute(moe_down_bf16_prefill, cudaFuncAttributeMaxDynamicSharedMemorySize, DN_SMEM));
  printf("smem gate_up %d down %d; geom(1024).NG %d geom(2816).NG %d geom(14336).NG %d\n", GU_SMEM, DN_SMEM, geom(1024).NG, geom(2816).NG, geom(14336).NG); CK(cudaMemset(dcount, 0, 1 << 20));
  std::mt19937 rng(7); std::uniform_real_distribution<float> u(-1, 1);
  int fails = 0;
  if (argc > 1 && !strcmp(argv[1], "prof")) {
    std::vector<Expert> ex; for (int i = 0; i < 4; i++) ex.push_back(make(1024, 2816, rng));
    std::vector<float> x((size_t) 512 * 1024); for (auto& v : x) v = u(rng); CK(cudaMemcpy(dx, x.data(), x.size() * 4, cudaMemcpyHostToDevice));
    for (int r = 0; r < 50; r++) for (int i = 0; i < 4; i++) { launch(ex[i], 1, 0); launch(ex[i], 256, 0); }
    CK(cudaDeviceSynchronize()); printf("prof done\n"); return 0;
  }
  // --- correctness vs double ---
  int shapes[][2] = {{1024, 2816}, {131, 67}, {100, 256}, {7, 33}, {64, 128}, {2048, 1408}, {33, 7}, {4096, 2048}, {96, 5000}};
  int ns[] = {1, 2, 3, 8, 9, 37, 256, 300};
  for (auto& sh : shapes) {
    if (getenv("SKIPCHECK")) break;
    Expert e = make(sh[0], sh[1], rng);
    double worst = 0;
    for (int n : ns) {
      if (sh[0] * sh[1] > 1000000 && n > 37 && n != 256) continue;
      std::vector<float> x((size_t) n * e.H); for (auto& v : x) v = u(rng);
      auto y = run(e, x, n); auto r = ref(e, x, std::min(n, sh[0] * sh[1] > 1000000 ? 9 : n));
      double md = 0; bool nan = false;
      for (size_t i = 0; i < r.size(); i++) { if (std::isnan(y[i])) nan = true; md = std::max(md, fabs(y[i] - r[i])); }
      for (size_t i = 0; i < y.size(); i++) if (std::isnan(y[i])) nan = true;
      worst = std::max(worst, md);
      if (nan || md > 1e-4) { printf("FAIL hidden %d ffn %d n %d: max abs diff %.3g nan %d\n", e.H, e.F, n, md, nan); fails++; }
    }
    printf("hidden %5d ffn %5d: worst max abs diff vs double %.3g\n", e.H, e.F, worst);
    // --- batch invariance ---
    int N = 300; std::vector<float> x((size_t) N * e.H); for (auto& v : x) v = u(rng);
    auto all = run(e, x, N); int bad = 0;
    for (int n : {1, 3, 5, 8, 9, 17, 64}) for (int s = 0; s + n <= N; s += 97) {
      std::vector<float> part(x.begin() + (size_t) s * e.H, x.begin() + (size_t) (s + n) * e.H);
      auto y = run(e, part, n);
      if (memcmp(y.data(), all.data() + (size_t) s * e.H, y.size() * 4) != 0) { bad++; if (bad < 4) printf("INVARIANCE FAIL hidden %d ffn %d rows %d..%d\n", e.H, e.F, s, s + n); }
    }
    if (bad) fails++; else printf("  batch invariance ok\n");
  }
  // --- timing ---
  int H = 1024, F = 2816, E = getenv("EXPERTS") ? atoi(getenv("EXPERTS")) : 16;
  if (getenv("SKIPCHECK")) { fails = 0; }
  std::vector<Expert> ex; for (int i = 0; i < E; i++) ex.push_back(make(H, F, rng));
  { std::vector<float> x((size_t) 512 * H); for (auto& v : x) v = u(rng); CK(cudaMemcpy(dx, x.data(), x.size() * 4, cudaMemcpyHostToDevice)); }
  double bytes = 3.0 * H * F * 2;
  int clk, bus; cudaDeviceGetAttribute(&clk, cudaDevAttrMemoryClockRate, 0); cudaDeviceGetAttribute(&bus, cudaDevAttrGlobalMemoryBusWidth, 0);
  double peak = 2.0 * clk * 1e3 * bus / 8 / 1e9;
  cudaStream_t st; CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  cudaEvent_t a, b; cudaEventCreate(&a); cudaEventCreate(&b);
  { // memory bandwidth check and clock warm-up: ~0.5 s of device-to-device copies
    void *pa, *pb; size_t sz = 1ull << 30; CK(cudaMalloc(&pa, sz)); CK(cudaMalloc(&pb, sz));
    for (int w = 0; w < 3; w++) {
      cudaEventRecord(a, st); for (int r = 0; r < 50; r++) CK(cudaMemcpyAsync(pb, pa, sz, cudaMemcpyDeviceToDevice, st)); cudaEventRecord(b, st); CK(cudaEventSynchronize(b));
      float ms; cudaEventElapsedTime(&ms, a, b); printf("d2d copy: %.0f GB/s (read + write)\n", 2.0 * sz * 50 / (ms * 1e-3) / 1e9);
    }
    cudaFree(pa); cudaFree(pb);
  }
  for (int n : {1, 2, 4, 8, 16, 64, 128, 256, 512}) {
    cudaGraph_t g; cudaGraphExec_t ge;
    CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal));
    for (int i = 0; i < E; i++) launch(ex[i], n, st);
    CK(cudaStreamEndCapture(st, &g)); CK(cudaGraphInstantiate(&ge, g, 0));
    for (int w = 0; w < 200; w++) CK(cudaGraphLaunch(ge, st));  // keeps the clocks up
    std::vector<float> ts;
    for (int r = 0; r < 15; r++) { cudaEventRecord(a, st); for (int k = 0; k < 4; k++) CK(cudaGraphLaunch(ge, st)); cudaEventRecord(b, st); CK(cudaEventSynchronize(b)); float ms; cudaEventElapsedTime(&ms, a, b); ts.push_back(ms * 1e3 / (4 * E)); }
    std::sort(ts.begin(), ts.end()); double us = ts[ts.size() / 2];
    // stream launches, no graph
    cudaEventRecord(a, st); for (int r = 0; r < 20; r++) for (int i = 0; i < E; i++) launch(ex[i], n, st); cudaEventRecord(b, st); CK(cudaEventSynchronize(b));
    float ms; cudaEventElapsedTime(&ms, a, b);
    printf("n %4d: %8.2f us per FFN (graph, median of 15; stream launches %.2f us) -> %.2f of bound %.2f us, %.1f TFLOP/s\n", n, us, ms * 1e3 / (20 * E), bytes / (peak * 1e9) / (us * 1e-6), bytes / (peak * 1e9) * 1e6, 2.0 * n * 3 * H * F / (us * 1e-6) / 1e12);
    cudaGraphExecDestroy(ge); cudaGraphDestroy(g);
  }
  for (int mask : {1, 2}) for (int n : {1, 256}) {
    MASK = mask;
    cudaGraph_t g; cudaGraphExec_t ge;
    CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal));
    for (int i = 0; i < E; i++) launch(ex[i], n, st);
    CK(cudaStreamEndCapture(st, &g)); CK(cudaGraphInstantiate(&ge, g, 0));
    for (int w = 0; w < 200; w++) CK(cudaGraphLaunch(ge, st));
    std::vector<float> ts;
    for (int r = 0; r < 15; r++) { cudaEventRecord(a, st); for (int k = 0; k < 4; k++) CK(cudaGraphLaunch(ge, st)); cudaEventRecord(b, st); CK(cudaEventSynchronize(b)); float ms; cudaEventElapsedTime(&ms, a, b); ts.push_back(ms * 1e3 / (4 * E)); }
    std::sort(ts.begin(), ts.end());
    printf("only %s, n %d: %.2f us per expert\n", mask == 1 ? "gate_up (+split)" : "down", n, ts[ts.size() / 2]);
  }
  MASK = 3;
  printf("peak %.0f GB/s; %s\n", peak, fails ? "FAILURES" : "all checks passed");
  return fails ? 1 : 0;
}

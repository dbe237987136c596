// How fast one expert's bytes reach the GPU from each kind of host memory, for the CUDA
// backend's upload path (docs/PERFORMANCE.md, "The GPU backend"): pinned memory, a memory-mapped
// file as the checkpoint is, that mapping registered with the driver (read-only), and plain
// pageable memory. Needs the CUDA toolkit and a GPU:
//
//   nvcc -O2 -o /tmp/host_register_upload deploy/bench/host_register_upload.cu && /tmp/host_register_upload
#include <cstdio>
#include <cstring>
#include <vector>
#include <algorithm>
#include <chrono>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <cuda_runtime.h>
static double med(std::vector<double> v) { std::sort(v.begin(), v.end()); return v[v.size() / 2]; }
int main() {
  const size_t n = 17301504;  // one bench expert, BF16
  const char* path = "/tmp/expert.bin";
  { std::vector<char> buf(n); for (size_t i = 0; i < n; i++) buf[i] = (char) (i * 131); FILE* f = fopen(path, "wb"); fwrite(buf.data(), 1, n, f); fclose(f); }
  int fd = open(path, O_RDONLY); void* map = mmap(nullptr, n, PROT_READ, MAP_SHARED, fd, 0);
  void* dev; cudaMalloc(&dev, n); void* pinned; cudaMallocHost(&pinned, n); memcpy(pinned, map, n);
  auto t = [&](const void* src) { std::vector<double> g; for (int r = 0; r < 7; r++) { auto a = std::chrono::steady_clock::now(); cudaMemcpy(dev, src, n, cudaMemcpyHostToDevice); auto b = std::chrono::steady_clock::now(); g.push_back(n / std::chrono::duration<double>(b - a).count() / 1e9); } return med(g); };
  printf("pinned (cudaMallocHost):         %.1f GB/s\n", t(pinned));
  printf("mmap'd file, not registered:     %.1f GB/s\n", t(map));
  auto a = std::chrono::steady_clock::now();
  cudaError_t e = cudaHostRegister(map, n, cudaHostRegisterReadOnly);
  auto b = std::chrono::steady_clock::now();
  printf("cudaHostRegister(read-only) on the mapping: %s, %.2f ms\n", cudaGetErrorString(e), std::chrono::duration<double>(b - a).count() * 1e3);
  if (e == cudaSuccess) { printf("mmap'd file, registered:         %.1f GB/s\n", t(map)); cudaHostUnregister(map); }
  else { cudaGetLastError(); }
  std::vector<char> heap(n); memcpy(heap.data(), map, n);
  printf("heap (pageable):                 %.1f GB/s\n", t(heap.data()));
  e = cudaHostRegister(heap.data(), n, 0); printf("cudaHostRegister on heap: %s\n", cudaGetErrorString(e));
  if (e == cudaSuccess) { printf("heap, registered:                %.1f GB/s\n", t(heap.data())); cudaHostUnregister(heap.data()); }
  return 0;
}

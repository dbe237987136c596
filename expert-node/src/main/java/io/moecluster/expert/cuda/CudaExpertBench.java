package io.moecluster.expert.cuda;

import static jcuda.driver.JCudaDriver.cuDeviceGet;
import static jcuda.driver.JCudaDriver.cuDeviceGetAttribute;
import static jcuda.driver.JCudaDriver.cuMemAllocHost;
import static jcuda.driver.JCudaDriver.cuMemFreeHost;
import static jcuda.driver.JCudaDriver.cuMemcpyHtoD;

import io.moecluster.core.model.ExpertWeights;
import io.moecluster.core.tensor.DType;
import io.moecluster.core.tensor.Matrix;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Random;
import jcuda.Pointer;
import jcuda.driver.CUdevice;
import jcuda.driver.CUdevice_attribute;
import jcuda.driver.CUdeviceptr;

/**
 * The GPU backend's speed on one device ({@code moe bench-expert}): the batch-1 expert FFN time
 * against the device's memory bandwidth bound, the TFLOP/s at a prefill batch, and the time to
 * upload one expert over PCIe from pinned and from pageable host memory. Kernel times are device
 * times (CUDA events around replays of a CUDA graph of the kernels) over several experts in
 * turn, so the weights come from device memory, not from the L2 cache; the batch-1 time with
 * each kernel launched from the host is printed beside it. A benchmark: it needs a GPU and is
 * not run by the tests.
 */
public final class CudaExpertBench {
  private CudaExpertBench() {}

  /** What to measure. */
  public record Spec(int hidden, int ffn, DType dtype, int batch, int experts, int repetitions) {
    public Spec {
      if (hidden < 1 || ffn < 1 || batch < 1 || experts < 1 || repetitions < 1) {
        throw new IllegalArgumentException("hidden, ffn, batch, experts and repetitions must be >= 1");
      }
      LaunchPlan.dtypeName(dtype);
    }
  }

  /**
   * The figures.
   *
   * @param peakGBps the device's memory bandwidth from its clock and bus width
   * @param batch1Seconds one expert FFN over one row, device time
   * @param batch1LaunchedSeconds the same with every kernel launched from the host
   * @param batchSeconds one expert FFN over {@code spec.batch()} rows, device time
   * @param dmaGBps one expert copied from pinned host memory (the DMA alone)
   * @param registeredGBps one expert uploaded by the backend from host memory registered with the
   *     driver, as the checkpoint is with {@code moe.expert.cuda.register-checkpoint}
   * @param pinnedGBps one expert uploaded through the pinned staging buffers (host copy included)
   * @param pageableGBps one expert uploaded straight from pageable host memory
   */
  public record Result(Spec spec, String device, long expertBytes, double peakGBps, double batch1Seconds,
      double batch1LaunchedSeconds, double batchSeconds, double dmaGBps, double registeredGBps, double pinnedGBps,
      double pageableGBps) {

    /** Bound time / measured time at batch 1: 1.0 reads the weights at the device's peak bandwidth. */
    public double batch1FractionOfBound() {
      return expertBytes / (peakGBps * 1e9) / batch1Seconds;
    }

    /** FLOPs of the FFN over {@code spec.batch()} rows per second, in TFLOP/s. */
    public double batchTflops() {
      return 2.0 * spec.batch() * 3.0 * spec.hidden() * spec.ffn() / batchSeconds / 1e12;
    }

    public String format() {
      return String.format(Locale.ROOT, """
          device:           %s
          expert:           hidden %d, ffn %d, %s, %.1f MiB; %d experts in turn
          batch 1:          %.2f us per expert FFN (device time; %.2f us launched one by one from the host);
                            bandwidth bound %.2f us at %.0f GB/s -> %.2f of the bound
          batch %d:%s%.1f us per expert FFN -> %.2f TFLOP/s
          upload 1 expert:  pinned DMA %.1f GB/s; from registered host memory %.1f GB/s;
                            through the pinned staging buffers %.1f GB/s; pageable %.1f GB/s
          """, device, spec.hidden(), spec.ffn(), spec.dtype(), expertBytes / 1048576.0, spec.experts(),
          batch1Seconds * 1e6, batch1LaunchedSeconds * 1e6, expertBytes / (peakGBps * 1e9) * 1e6, peakGBps,
          batch1FractionOfBound(), spec.batch(), " ".repeat(Math.max(1, 10 - String.valueOf(spec.batch()).length())),
          batchSeconds * 1e6, batchTflops(), dmaGBps, registeredGBps, pinnedGBps, pageableGBps);
    }
  }

  /** Runs the benchmark on {@code device}. */
  public static Result run(CudaProbe.Device info, Spec spec, long stagingBytes) {
    List<ExpertWeights> weights = new ArrayList<>();
    Random random = new Random(42);
    for (int e = 0; e < spec.experts(); e++) {
      weights.add(randomExpert(spec, random));
    }
    long expertBytes = weights.get(0).byteSize();
    try (CudaDevice device = CudaDevice.open(info, stagingBytes)) {
      var tier = new DeviceWeightTier<CUdeviceptr>(Long.MAX_VALUE / 2, device, device, device.copyExecutor(), "bench",
          "cuda:" + info.ordinal());
      List<DeviceWeightTier.Lease<CUdeviceptr>> leases = new ArrayList<>();
      try {
        for (int e = 0; e < spec.experts(); e++) {
          DeviceWeightTier.Lease<CUdeviceptr> l = tier.acquire(0, e, weights.get(e)).join();
          if (l == null) {
            throw new IllegalStateException("could not upload " + spec.experts() + " experts to " + info);
          }
          leases.add(l);
        }
        double b1 = device.onCompute(() -> device.kernelSeconds(leases, weights, 1, spec.repetitions()));
        double b1Launched = device.onCompute(() -> device.launchedSeconds(leases, weights, 1, spec.repetitions()));
        double bn = device.onCompute(() -> device.kernelSeconds(leases, weights, spec.batch(), spec.repetitions()));
        double[] upload = device.onCopy(() -> uploadGBps(device, weights.get(0), leases.get(0)));
        return new Result(spec, info.toString(), expertBytes, peakGBps(info), b1, b1Launched, bn, upload[0], upload[1],
            upload[2], upload[3]);
      } finally {
        leases.forEach(DeviceWeightTier.Lease::close);
        tier.close();
      }
    }
  }

  /**
   * Upload bandwidth of one expert in GB/s, median of 5: the DMA alone from pinned memory, the
   * backend's upload from host memory registered with the driver, its path through the pinned
   * staging buffers (the host copy into them included), and a copy straight from pageable
   * memory. Copy thread.
   */
  private static double[] uploadGBps(CudaDevice device, ExpertWeights w, DeviceWeightTier.Lease<CUdeviceptr> into) {
    DeviceWeightTier.Layout layout = into.layout();
    CUdeviceptr block = into.block();
    Matrix[] ms = {w.gate(), w.up(), w.down()};
    long[] offsets = {layout.gateOffset(), layout.upOffset(), layout.downOffset()};
    Pointer pinnedHost = new Pointer();
    cuMemAllocHost(pinnedHost, w.byteSize());
    try (Arena arena = Arena.ofConfined()) {
      MemorySegment pinned = MemorySegment.ofBuffer(pinnedHost.getByteBuffer(0, w.byteSize()));
      MemorySegment[] pageable = new MemorySegment[3];
      long at = 0;
      for (int i = 0; i < 3; i++) {
        pageable[i] = arena.allocate(ms[i].byteSize(), 64).copyFrom(ms[i].data());
        pinned.asSlice(at, ms[i].byteSize()).copyFrom(ms[i].data());
        at += ms[i].byteSize();
      }
      double[] dma = new double[5];
      double[] staged = new double[5];
      double[] plain = new double[5];
      for (int r = 0; r < 5; r++) {
        long t0 = System.nanoTime();
        long from = 0;
        for (int i = 0; i < 3; i++) {
          cuMemcpyHtoD(block.withByteOffset(offsets[i]), pinnedHost.withByteOffset(from), ms[i].byteSize());
          from += ms[i].byteSize();
        }
        dma[r] = gbps(w.byteSize(), System.nanoTime() - t0);
        long t1 = System.nanoTime();
        device.upload(w, block, layout);
        staged[r] = gbps(w.byteSize(), System.nanoTime() - t1);
        long t2 = System.nanoTime();
        for (int i = 0; i < 3; i++) {
          device.uploadPageable(pageable[i], block.withByteOffset(offsets[i]));
        }
        plain[r] = gbps(w.byteSize(), System.nanoTime() - t2);
      }
      // The backend's direct path: the same bytes, registered as a checkpoint mapping would be.
      device.registerHostMemory(List.of(pageable));
      ExpertWeights registered = new ExpertWeights(
          new Matrix("gate", w.gate().dtype(), w.gate().rows(), w.gate().cols(), pageable[0]),
          new Matrix("up", w.up().dtype(), w.up().rows(), w.up().cols(), pageable[1]),
          new Matrix("down", w.down().dtype(), w.down().rows(), w.down().cols(), pageable[2]));
      double[] direct = new double[5];
      try {
        for (int r = 0; r < 5; r++) {
          long t = System.nanoTime();
          device.upload(registered, block, layout);
          direct[r] = gbps(w.byteSize(), System.nanoTime() - t);
        }
      } finally {
        device.unregisterHostMemory(); // before the arena frees the bytes
      }
      if (device.directUploads() < 5 * 3) {
        throw new IllegalStateException("the registered upload went through the staging buffers");
      }
      return new double[] {median(dma), median(direct), median(staged), median(plain)};
    } finally {
      cuMemFreeHost(pinnedHost);
    }
  }

  private static double gbps(long bytes, long nanos) {
    return bytes / (nanos / 1e9) / 1e9;
  }

  private static double median(double[] v) {
    double[] s = v.clone();
    Arrays.sort(s);
    return s[s.length / 2];
  }

  /** The memory bandwidth the device's memory clock and bus width allow (double data rate), in GB/s. */
  static double peakGBps(CudaProbe.Device info) {
    CUdevice dev = new CUdevice();
    cuDeviceGet(dev, info.ordinal());
    int[] clockKHz = {0};
    int[] busBits = {0};
    cuDeviceGetAttribute(clockKHz, CUdevice_attribute.CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE, dev);
    cuDeviceGetAttribute(busBits, CUdevice_attribute.CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH, dev);
    return 2.0 * clockKHz[0] * 1e3 * (busBits[0] / 8.0) / 1e9;
  }

  private static ExpertWeights randomExpert(Spec s, Random r) {
    float scale = (float) (1 / Math.sqrt(s.hidden()));
    return new ExpertWeights(
        Matrix.of("gate", s.dtype(), s.ffn(), s.hidden(), values(r, s.ffn() * s.hidden(), scale)),
        Matrix.of("up", s.dtype(), s.ffn(), s.hidden(), values(r, s.ffn() * s.hidden(), scale)),
        Matrix.of("down", s.dtype(), s.hidden(), s.ffn(), values(r, s.hidden() * s.ffn(), scale)));
  }

  private static float[] values(Random r, int n, float scale) {
    float[] v = new float[n];
    for (int i = 0; i < n; i++) {
      v[i] = (r.nextFloat() * 2 - 1) * scale;
    }
    return v;
  }
}

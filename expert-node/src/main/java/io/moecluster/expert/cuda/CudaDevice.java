package io.moecluster.expert.cuda;

import static jcuda.driver.JCudaDriver.cuCtxSetCurrent;
import static jcuda.driver.JCudaDriver.cuDeviceGet;
import static jcuda.driver.JCudaDriver.cuDevicePrimaryCtxRelease;
import static jcuda.driver.JCudaDriver.cuDevicePrimaryCtxRetain;
import static jcuda.driver.JCudaDriver.cuEventCreate;
import static jcuda.driver.JCudaDriver.cuEventDestroy;
import static jcuda.driver.JCudaDriver.cuEventElapsedTime;
import static jcuda.driver.JCudaDriver.cuEventRecord;
import static jcuda.driver.JCudaDriver.cuEventSynchronize;
import static jcuda.driver.JCudaDriver.cuLaunchKernel;
import static jcuda.driver.JCudaDriver.cuMemAlloc;
import static jcuda.driver.JCudaDriver.cuMemAllocHost;
import static jcuda.driver.JCudaDriver.cuMemFree;
import static jcuda.driver.JCudaDriver.cuMemFreeHost;
import static jcuda.driver.JCudaDriver.cuMemGetInfo;
import static jcuda.driver.JCudaDriver.cuMemcpyDtoHAsync;
import static jcuda.driver.JCudaDriver.cuMemcpyHtoD;
import static jcuda.driver.JCudaDriver.cuMemcpyHtoDAsync;
import static jcuda.driver.JCudaDriver.cuModuleGetFunction;
import static jcuda.driver.JCudaDriver.cuModuleLoadData;
import static jcuda.driver.JCudaDriver.cuModuleUnload;
import static jcuda.driver.JCudaDriver.cuStreamCreate;
import static jcuda.driver.JCudaDriver.cuStreamDestroy;
import static jcuda.driver.JCudaDriver.cuStreamSynchronize;

import io.moecluster.core.model.ExpertWeights;
import io.moecluster.core.tensor.DType;
import io.moecluster.core.tensor.Matrix;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import jcuda.Pointer;
import jcuda.driver.CUcontext;
import jcuda.driver.CUdevice;
import jcuda.driver.CUdeviceptr;
import jcuda.driver.CUevent;
import jcuda.driver.CUevent_flags;
import jcuda.driver.CUfunction;
import jcuda.driver.CUmodule;
import jcuda.driver.CUstream;
import jcuda.driver.CUstream_flags;

/**
 * One GPU through the CUDA driver API (JCuda's {@code JCudaDriver}; no runtime library, no
 * cuBLAS): its primary context, the kernels of {@code expert_ffn.ptx}, and the two threads that
 * own all work on it. The <b>compute thread</b> runs the FFN kernels on the compute stream; the
 * <b>copy thread</b> allocates, uploads (through two pinned staging buffers on the copy stream,
 * so the host copy into one overlaps the DMA from the other) and frees device memory. CUDA
 * contexts are per thread: only these two threads ever make the context current, never an actor
 * or compute-executor thread.
 */
public final class CudaDevice implements DeviceWeightTier.Memory<CUdeviceptr>, DeviceWeightTier.Uploader<CUdeviceptr>,
    AutoCloseable {
  /** The PTX of the kernels, a resource next to this class (compiled from src/main/cuda). */
  public static final String PTX_RESOURCE = "expert_ffn.ptx";

  private final CudaProbe.Device info;
  private final CUcontext context = new CUcontext();
  private final CUdevice device = new CUdevice();
  private final ExecutorService computeThread;
  private final ExecutorService copyThread;
  private final long stagingBytes;
  private final java.util.concurrent.atomic.AtomicBoolean closed = new java.util.concurrent.atomic.AtomicBoolean();
  // Owned by the copy thread:
  private CUstream copyStream;
  private final Pointer[] staging = new Pointer[2]; // pinned host buffers of stagingBytes
  private final CUevent[] stagingFree = new CUevent[2]; // recorded after the DMA out of each buffer
  // Owned by the compute thread:
  private CUmodule module;
  private final Map<String, CUfunction> functions = new HashMap<>();
  private CUstream computeStream;
  private Scratch scratch = new Scratch(0, 0, 0);

  /** Device buffers of the activations (grow-only) and the pinned host buffers they copy through. */
  private record Scratch(long xBytes, long hBytes, long yBytes, CUdeviceptr x, CUdeviceptr h, CUdeviceptr y,
      Pointer hostIn, Pointer hostOut) {
    Scratch(long x, long h, long y) {
      this(x, h, y, null, null, null, null, null);
    }
  }

  private CudaDevice(CudaProbe.Device info, long stagingBytes) {
    this.info = info;
    this.stagingBytes = stagingBytes;
    cuDeviceGet(device, info.ordinal());
    cuDevicePrimaryCtxRetain(context, device);
    this.computeThread = contextThread("moe-cuda" + info.ordinal() + "-compute");
    this.copyThread = contextThread("moe-cuda" + info.ordinal() + "-copy");
  }

  /**
   * Opens device {@code info}: retains its primary context, loads the PTX module (the driver
   * JIT-compiles it for this GPU), creates the streams and pinned staging buffers.
   */
  public static CudaDevice open(CudaProbe.Device info, long stagingBytes) {
    byte[] ptx = loadPtx();
    CudaDevice d = new CudaDevice(info, stagingBytes);
    try {
      d.onCompute(() -> {
        d.module = new CUmodule();
        cuModuleLoadData(d.module, ptx);
        for (String name : LaunchPlan.kernelNames()) {
          CUfunction f = new CUfunction();
          cuModuleGetFunction(f, d.module, name);
          d.functions.put(name, f);
        }
        d.computeStream = new CUstream();
        cuStreamCreate(d.computeStream, CUstream_flags.CU_STREAM_NON_BLOCKING);
        return null;
      });
      d.onCopy(() -> {
        d.copyStream = new CUstream();
        cuStreamCreate(d.copyStream, CUstream_flags.CU_STREAM_NON_BLOCKING);
        for (int i = 0; i < 2; i++) {
          d.staging[i] = new Pointer();
          cuMemAllocHost(d.staging[i], stagingBytes);
          d.stagingFree[i] = new CUevent();
          cuEventCreate(d.stagingFree[i], CUevent_flags.CU_EVENT_DISABLE_TIMING);
          cuEventRecord(d.stagingFree[i], d.copyStream);
        }
        return null;
      });
    } catch (RuntimeException e) {
      d.close();
      throw e;
    }
    return d;
  }

  /** The PTX module, NUL-terminated as cuModuleLoadData wants it. */
  static byte[] loadPtx() {
    try (InputStream in = CudaDevice.class.getResourceAsStream(PTX_RESOURCE)) {
      if (in == null) {
        throw new IllegalStateException("the CUDA kernels (" + PTX_RESOURCE + ") are missing from the classpath");
      }
      byte[] text = in.readAllBytes();
      byte[] z = new byte[text.length + 1];
      System.arraycopy(text, 0, z, 0, text.length);
      return z;
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  private ExecutorService contextThread(String name) {
    return Executors.newSingleThreadExecutor(r -> {
      Thread t = new Thread(() -> {
        cuCtxSetCurrent(context);
        r.run();
      }, name);
      t.setDaemon(true);
      return t;
    });
  }

  public CudaProbe.Device info() {
    return info;
  }

  /** The copy thread: the executor of this device's weight tier. */
  public ExecutorService copyExecutor() {
    return copyThread;
  }

  /** The compute thread. */
  public ExecutorService computeExecutor() {
    return computeThread;
  }

  /** Free and total device memory now, in bytes. */
  public long[] memoryInfo() {
    return onCopy(() -> {
      long[] free = {0};
      long[] total = {0};
      cuMemGetInfo(free, total);
      return new long[] {free[0], total[0]};
    });
  }

  // --- DeviceWeightTier.Memory and Uploader: called on the copy thread ---

  @Override
  public CUdeviceptr allocate(long bytes) {
    CUdeviceptr p = new CUdeviceptr();
    cuMemAlloc(p, bytes);
    return p;
  }

  @Override
  public void free(CUdeviceptr block) {
    cuMemFree(block);
  }

  @Override
  public void upload(ExpertWeights source, CUdeviceptr block, DeviceWeightTier.Layout layout) {
    uploadPinned(source.gate().data(), block.withByteOffset(layout.gateOffset()));
    uploadPinned(source.up().data(), block.withByteOffset(layout.upOffset()));
    uploadPinned(source.down().data(), block.withByteOffset(layout.downOffset()));
    cuStreamSynchronize(copyStream);
  }

  /** Copies {@code src} to {@code dst} through the two pinned staging buffers in turn. Copy thread. */
  void uploadPinned(MemorySegment src, CUdeviceptr dst) {
    long size = src.byteSize();
    int buffer = 0;
    for (long off = 0; off < size; off += stagingBytes) {
      long n = Math.min(stagingBytes, size - off);
      cuEventSynchronize(stagingFree[buffer]); // its previous DMA is done
      MemorySegment.ofBuffer(staging[buffer].getByteBuffer(0, n)).copyFrom(src.asSlice(off, n));
      cuMemcpyHtoDAsync(dst.withByteOffset(off), staging[buffer], n, copyStream);
      cuEventRecord(stagingFree[buffer], copyStream);
      buffer ^= 1;
    }
  }

  /** Copies {@code src} to {@code dst} from pageable memory (the bench's baseline). Copy thread. */
  void uploadPageable(MemorySegment src, CUdeviceptr dst) {
    cuMemcpyHtoD(dst, Pointer.to(src.asByteBuffer()), src.byteSize());
  }

  // --- compute ---

  /**
   * The FFN over {@code rows} rows on the resident weights of {@code lease}: gate/up then down on
   * the compute stream. Blocks the compute thread until the output is back on the host.
   *
   * @param x {@code [rows, hidden]}
   * @return {@code [rows, hidden]}
   */
  float[] forward(DeviceWeightTier.Lease<CUdeviceptr> lease, ExpertWeights w, float[] x, int rows) {
    int hidden = w.hiddenSize();
    long xBytes = (long) rows * hidden * Float.BYTES;
    ensureScratch(xBytes, (long) rows * w.ffnSize() * Float.BYTES);
    scratch.hostIn().getByteBuffer(0, xBytes).order(ByteOrder.nativeOrder()).asFloatBuffer().put(x, 0, rows * hidden);
    cuMemcpyHtoDAsync(scratch.x(), scratch.hostIn(), xBytes, computeStream);
    launchFfn(lease.block(), lease.layout(), w, rows);
    cuMemcpyDtoHAsync(scratch.hostOut(), scratch.y(), xBytes, computeStream);
    cuStreamSynchronize(computeStream);
    float[] out = new float[rows * hidden];
    scratch.hostOut().getByteBuffer(0, xBytes).order(ByteOrder.nativeOrder()).asFloatBuffer().get(out);
    return out;
  }

  /** Queues gate/up then down over the first {@code rows} rows of the scratch buffers. Compute thread. */
  private void launchFfn(CUdeviceptr block, DeviceWeightTier.Layout layout, ExpertWeights w, int rows) {
    int hidden = w.hiddenSize();
    int ffn = w.ffnSize();
    DType dtype = w.gate().dtype();
    CUdeviceptr w1 = block.withByteOffset(layout.gateOffset());
    CUdeviceptr w3 = block.withByteOffset(layout.upOffset());
    CUdeviceptr w2 = block.withByteOffset(layout.downOffset());
    for (LaunchPlan.Launch l : LaunchPlan.plan(LaunchPlan.Stage.GATE_UP, dtype, rows, ffn, hidden)) {
      launch(l, Pointer.to(Pointer.to(w1), Pointer.to(w3),
          Pointer.to(scratch.x().withByteOffset((long) l.rowStart() * hidden * Float.BYTES)),
          Pointer.to(scratch.h().withByteOffset((long) l.rowStart() * ffn * Float.BYTES)),
          Pointer.to(new int[] {l.rows()}), Pointer.to(new int[] {ffn}), Pointer.to(new int[] {hidden}),
          Pointer.to(new int[] {l.vectorized() ? 1 : 0})));
    }
    for (LaunchPlan.Launch l : LaunchPlan.plan(LaunchPlan.Stage.DOWN, dtype, rows, hidden, ffn)) {
      launch(l, Pointer.to(Pointer.to(w2),
          Pointer.to(scratch.h().withByteOffset((long) l.rowStart() * ffn * Float.BYTES)),
          Pointer.to(scratch.y().withByteOffset((long) l.rowStart() * hidden * Float.BYTES)),
          Pointer.to(new int[] {l.rows()}), Pointer.to(new int[] {hidden}), Pointer.to(new int[] {ffn}),
          Pointer.to(new int[] {l.vectorized() ? 1 : 0})));
    }
  }

  /**
   * Device time of one expert FFN over {@code rows} rows, in seconds: the kernels alone (no
   * host copies), measured with events around {@code repetitions} passes over every expert of
   * {@code resident} in turn (more bytes than the L2 cache holds, so weights come from memory as
   * in serving). For benchmarks. Compute thread.
   */
  double kernelSeconds(List<DeviceWeightTier.Lease<CUdeviceptr>> resident, List<ExpertWeights> weights, int rows,
      int repetitions) {
    ExpertWeights first = weights.get(0);
    ensureScratch((long) rows * first.hiddenSize() * Float.BYTES, (long) rows * first.ffnSize() * Float.BYTES);
    CUevent start = new CUevent();
    CUevent end = new CUevent();
    cuEventCreate(start, CUevent_flags.CU_EVENT_DEFAULT);
    cuEventCreate(end, CUevent_flags.CU_EVENT_DEFAULT);
    try {
      for (int i = 0; i < resident.size(); i++) { // warm-up: JIT, clocks
        launchFfn(resident.get(i).block(), resident.get(i).layout(), weights.get(i), rows);
      }
      cuEventRecord(start, computeStream);
      for (int r = 0; r < repetitions; r++) {
        for (int i = 0; i < resident.size(); i++) {
          launchFfn(resident.get(i).block(), resident.get(i).layout(), weights.get(i), rows);
        }
      }
      cuEventRecord(end, computeStream);
      cuEventSynchronize(end);
      float[] millis = {0};
      cuEventElapsedTime(millis, start, end);
      return millis[0] / 1e3 / ((double) repetitions * resident.size());
    } finally {
      cuEventDestroy(start);
      cuEventDestroy(end);
    }
  }

  private void launch(LaunchPlan.Launch l, Pointer params) {
    cuLaunchKernel(functions.get(l.kernel()), l.gridX(), l.gridY(), 1, l.blockX(), 1, 1, 0, computeStream,
        params, null);
  }

  /** Grows the activation buffers to hold {@code xBytes} (x and y) and {@code hBytes} (h). Compute thread. */
  private void ensureScratch(long xBytes, long hBytes) {
    if (xBytes <= scratch.xBytes() && hBytes <= scratch.hBytes()) {
      return;
    }
    freeScratch();
    long xb = Math.max(xBytes, scratch.xBytes() * 2);
    long hb = Math.max(hBytes, scratch.hBytes() * 2);
    CUdeviceptr x = new CUdeviceptr();
    CUdeviceptr h = new CUdeviceptr();
    CUdeviceptr y = new CUdeviceptr();
    Pointer in = new Pointer();
    Pointer out = new Pointer();
    cuMemAlloc(x, xb);
    cuMemAlloc(h, hb);
    cuMemAlloc(y, xb);
    cuMemAllocHost(in, xb);
    cuMemAllocHost(out, xb);
    scratch = new Scratch(xb, hb, xb, x, h, y, in, out);
  }

  private void freeScratch() {
    if (scratch.x() != null) {
      cuMemFree(scratch.x());
      cuMemFree(scratch.h());
      cuMemFree(scratch.y());
      cuMemFreeHost(scratch.hostIn());
      cuMemFreeHost(scratch.hostOut());
      scratch = new Scratch(0, 0, 0);
    }
  }

  /** Runs {@code task} on the compute thread and waits for it. */
  public <T> T onCompute(Callable<T> task) {
    return await(computeThread.submit(task));
  }

  /** Runs {@code task} on the copy thread and waits for it. */
  public <T> T onCopy(Callable<T> task) {
    return await(copyThread.submit(task));
  }

  private static <T> T await(Future<T> f) {
    try {
      return f.get();
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException("interrupted while waiting for the GPU", e);
    } catch (ExecutionException e) {
      if (e.getCause() instanceof RuntimeException re) {
        throw re;
      }
      throw new IllegalStateException(e.getCause());
    }
  }

  /** Frees the device's buffers and streams, stops its threads and releases the context (once). */
  @Override
  public void close() {
    if (!closed.compareAndSet(false, true)) {
      return;
    }
    try {
      onCompute(() -> {
        if (computeStream != null) {
          cuStreamSynchronize(computeStream);
        }
        freeScratch();
        if (computeStream != null) {
          cuStreamDestroy(computeStream);
        }
        if (module != null) {
          cuModuleUnload(module);
        }
        return null;
      });
      onCopy(() -> {
        if (copyStream != null) {
          cuStreamSynchronize(copyStream);
          cuStreamDestroy(copyStream);
        }
        for (int i = 0; i < 2; i++) {
          if (stagingFree[i] != null) {
            cuEventDestroy(stagingFree[i]);
          }
          if (staging[i] != null) {
            cuMemFreeHost(staging[i]);
          }
        }
        return null;
      });
    } finally {
      for (ExecutorService pool : List.of(computeThread, copyThread)) {
        pool.shutdown();
        try {
          pool.awaitTermination(5, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
        }
      }
      cuDevicePrimaryCtxRelease(device);
    }
  }

  @Override
  public String toString() {
    return info.toString();
  }
}

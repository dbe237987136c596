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
import static jcuda.driver.JCudaDriver.cuFuncSetAttribute;
import static jcuda.driver.JCudaDriver.cuGraphDestroy;
import static jcuda.driver.JCudaDriver.cuGraphExecDestroy;
import static jcuda.driver.JCudaDriver.cuGraphInstantiate;
import static jcuda.driver.JCudaDriver.cuGraphLaunch;
import static jcuda.driver.JCudaDriver.cuLaunchKernel;
import static jcuda.driver.JCudaDriver.cuMemAlloc;
import static jcuda.driver.JCudaDriver.cuMemAllocHost;
import static jcuda.driver.JCudaDriver.cuMemFree;
import static jcuda.driver.JCudaDriver.cuMemFreeHost;
import static jcuda.driver.JCudaDriver.cuMemGetInfo;
import static jcuda.driver.JCudaDriver.cuMemHostRegister;
import static jcuda.driver.JCudaDriver.cuMemHostUnregister;
import static jcuda.driver.JCudaDriver.cuMemcpyDtoHAsync;
import static jcuda.driver.JCudaDriver.cuMemcpyHtoD;
import static jcuda.driver.JCudaDriver.cuMemcpyHtoDAsync;
import static jcuda.driver.JCudaDriver.cuMemsetD32Async;
import static jcuda.driver.JCudaDriver.cuModuleGetFunction;
import static jcuda.driver.JCudaDriver.cuModuleLoadData;
import static jcuda.driver.JCudaDriver.cuModuleUnload;
import static jcuda.driver.JCudaDriver.cuStreamBeginCapture;
import static jcuda.driver.JCudaDriver.cuStreamCreate;
import static jcuda.driver.JCudaDriver.cuStreamDestroy;
import static jcuda.driver.JCudaDriver.cuStreamEndCapture;
import static jcuda.driver.JCudaDriver.cuStreamSynchronize;

import io.moecluster.core.model.ExpertWeights;
import io.moecluster.core.tensor.DType;
import io.moecluster.core.tensor.Matrix;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;
import java.util.Arrays;
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
import jcuda.driver.CUfunction_attribute;
import jcuda.driver.CUgraph;
import jcuda.driver.CUgraphExec;
import jcuda.driver.CUmodule;
import jcuda.driver.CUstream;
import jcuda.driver.CUstreamCaptureMode;
import jcuda.driver.CUstream_flags;
import jcuda.driver.JCudaDriver;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

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
  private static final Logger log = LoggerFactory.getLogger(CudaDevice.class);

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
  private final HostRegistrations registrations = new HostRegistrations(new HostRegistrations.Driver() {
    @Override
    public void register(MemorySegment chunk) {
      cuMemHostRegister(hostPointer(chunk), chunk.byteSize(), JCudaDriver.CU_MEMHOSTREGISTER_READ_ONLY);
    }

    @Override
    public void unregister(MemorySegment chunk) {
      cuMemHostUnregister(hostPointer(chunk));
    }
  });
  private long directUploads;
  private final CUevent[] stagingFree = new CUevent[2]; // recorded after the DMA out of each buffer
  // Owned by the compute thread:
  private CUmodule module;
  private final Map<String, CUfunction> functions = new HashMap<>();
  private CUstream computeStream;
  // Activations, grow-only: x and y [rows, hidden] F32, h [rows, ffn] F32 (decode), the split
  // BF16 hi/lo activations of the prefill kernels, their group partials and tile counters, and
  // the pinned host buffers that x and y copy through.
  private final DeviceBuffer x = new DeviceBuffer();
  private final DeviceBuffer h = new DeviceBuffer();
  private final DeviceBuffer y = new DeviceBuffer();
  private final DeviceBuffer xSplit = new DeviceBuffer();
  private final DeviceBuffer hSplit = new DeviceBuffer();
  private final DeviceBuffer partials = new DeviceBuffer();
  private final DeviceBuffer counters = new DeviceBuffer();
  private Pointer hostIn;
  private Pointer hostOut;
  private long hostBytes;

  /** A device allocation that only grows (doubling), so steady serving allocates nothing. Compute thread. */
  private static final class DeviceBuffer {
    CUdeviceptr ptr;
    long bytes;

    /** Returns true when it had to (re)allocate: the old contents are gone. */
    boolean ensure(long need) {
      if (need <= bytes) {
        return false;
      }
      free();
      long size = Math.max(need, bytes * 2);
      ptr = new CUdeviceptr();
      cuMemAlloc(ptr, size);
      bytes = size;
      return true;
    }

    void free() {
      if (ptr != null) {
        cuMemFree(ptr);
        ptr = null;
        bytes = 0;
      }
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
        for (LaunchPlan.Stage stage : LaunchPlan.Stage.values()) {
          // The prefill kernels' shared-memory rings are larger than the 48 KiB a launch gets
          // without asking.
          cuFuncSetAttribute(d.functions.get(stage.prefix + "bf16_prefill"),
              CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
              LaunchPlan.tile(stage).sharedBytes());
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
    uploadMatrix(source.gate().data(), block.withByteOffset(layout.gateOffset()));
    uploadMatrix(source.up().data(), block.withByteOffset(layout.upOffset()));
    uploadMatrix(source.down().data(), block.withByteOffset(layout.downOffset()));
    cuStreamSynchronize(copyStream);
  }

  /** One matrix: by DMA straight from registered host memory, else through the staging buffers. */
  private void uploadMatrix(MemorySegment src, CUdeviceptr dst) {
    if (registrations.contains(src)) {
      cuMemcpyHtoDAsync(dst, hostPointer(src), src.byteSize(), copyStream);
      directUploads++;
    } else {
      uploadPinned(src, dst);
    }
  }

  /**
   * Registers {@code regions} (the checkpoint's mappings) with the driver, read-only, as a direct
   * upload source; logs what it could not register and keeps the staging buffers for that. Pins
   * the regions' pages, reading them in first. Copy thread.
   */
  void registerHostMemory(List<MemorySegment> regions) {
    long wanted = 0;
    long done = 0;
    long t0 = System.nanoTime();
    for (MemorySegment region : regions) {
      wanted += region.byteSize();
      done += registrations.register(region);
    }
    if (done < wanted) {
      log.warn("{}: the driver registered {} of {} MiB of host memory (moe.expert.cuda.register-checkpoint);"
          + " uploads from the rest go through the staging buffers", info, done >> 20, wanted >> 20);
    } else {
      log.info("{}: {} MiB of host memory registered with the driver in {} ms; uploads from it go by DMA", info,
          done >> 20, (System.nanoTime() - t0) / 1_000_000);
    }
  }

  /** Unregisters every region registered so far (before its memory goes away). Copy thread. */
  void unregisterHostMemory() {
    registrations.clear();
  }

  /** Uploads that went by DMA from registered host memory so far (tests and the bench). */
  long directUploads() {
    return directUploads;
  }

  /** A driver pointer to native memory (through a writable view: the binding wants a plain buffer). */
  private static Pointer hostPointer(MemorySegment bytes) {
    return Pointer.to(MemorySegment.ofAddress(bytes.address()).reinterpret(bytes.byteSize()).asByteBuffer());
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
   * @param input {@code [rows, hidden]}
   * @return {@code [rows, hidden]}
   */
  float[] forward(DeviceWeightTier.Lease<CUdeviceptr> lease, ExpertWeights w, float[] input, int rows) {
    int hidden = w.hiddenSize();
    long xBytes = (long) rows * hidden * Float.BYTES;
    FfnLaunches launches = FfnLaunches.of(w, rows);
    prepare(w, rows, launches);
    hostIn.getByteBuffer(0, xBytes).order(ByteOrder.nativeOrder()).asFloatBuffer().put(input, 0, rows * hidden);
    cuMemcpyHtoDAsync(x.ptr, hostIn, xBytes, computeStream);
    launchFfn(lease.block(), lease.layout(), w, launches);
    cuMemcpyDtoHAsync(hostOut, y.ptr, xBytes, computeStream);
    cuStreamSynchronize(computeStream);
    float[] out = new float[rows * hidden];
    hostOut.getByteBuffer(0, xBytes).order(ByteOrder.nativeOrder()).asFloatBuffer().get(out);
    return out;
  }

  /** The kernel launches of one FFN: gate/up (after the split of x, for BF16 prefill), then down. */
  private record FfnLaunches(List<LaunchPlan.Launch> gateUp, List<LaunchPlan.Launch> down, boolean split) {
    static FfnLaunches of(ExpertWeights w, int rows) {
      DType dtype = w.gate().dtype();
      return new FfnLaunches(LaunchPlan.plan(LaunchPlan.Stage.GATE_UP, dtype, rows, w.ffnSize(), w.hiddenSize()),
          LaunchPlan.plan(LaunchPlan.Stage.DOWN, dtype, rows, w.hiddenSize(), w.ffnSize()),
          dtype == DType.BF16 && LaunchPlan.bf16Prefill(rows));
    }
  }

  /** Sizes the activation buffers for {@code launches} (an FFN of {@code w}'s shape). Compute thread. */
  private void prepare(ExpertWeights w, int rows, FfnLaunches launches) {
    int hidden = w.hiddenSize();
    int ffn = w.ffnSize();
    long xBytes = (long) rows * hidden * Float.BYTES;
    x.ensure(xBytes);
    y.ensure(xBytes);
    h.ensure((long) rows * ffn * Float.BYTES);
    if (xBytes > hostBytes) {
      if (hostIn != null) {
        cuMemFreeHost(hostIn);
        cuMemFreeHost(hostOut);
      }
      hostBytes = Math.max(xBytes, hostBytes * 2);
      hostIn = new Pointer();
      hostOut = new Pointer();
      cuMemAllocHost(hostIn, hostBytes);
      cuMemAllocHost(hostOut, hostBytes);
    }
    if (launches.split()) {
      xSplit.ensure(rows * LaunchPlan.splitBytesPerRow(hidden));
      hSplit.ensure(rows * LaunchPlan.splitBytesPerRow(ffn));
      long partialFloats = 0;
      int tiles = 0;
      for (LaunchPlan.Launch l : launches.gateUp()) {
        partialFloats = Math.max(partialFloats, LaunchPlan.partialFloats(l, ffn, hidden));
        tiles = Math.max(tiles, LaunchPlan.counters(l));
      }
      for (LaunchPlan.Launch l : launches.down()) {
        partialFloats = Math.max(partialFloats, LaunchPlan.partialFloats(l, hidden, ffn));
        tiles = Math.max(tiles, LaunchPlan.counters(l));
      }
      partials.ensure(Math.max(partialFloats, 1) * Float.BYTES);
      if (counters.ensure((long) Math.max(tiles, 1) * Integer.BYTES)) {
        // The kernels leave every counter at zero; a new buffer starts there once.
        cuMemsetD32Async(counters.ptr, 0, counters.bytes / Integer.BYTES, computeStream);
      }
    }
  }

  /** Queues gate/up then down ({@code launches}) on the activation buffers. Compute thread. */
  private void launchFfn(CUdeviceptr block, DeviceWeightTier.Layout layout, ExpertWeights w, FfnLaunches launches) {
    int hidden = w.hiddenSize();
    int ffn = w.ffnSize();
    CUdeviceptr w1 = block.withByteOffset(layout.gateOffset());
    CUdeviceptr w3 = block.withByteOffset(layout.upOffset());
    CUdeviceptr w2 = block.withByteOffset(layout.downOffset());
    int[] geoHidden = LaunchPlan.geometry(hidden).asParameter();
    int[] geoFfn = LaunchPlan.geometry(ffn).asParameter();
    long xRow = (long) hidden * Float.BYTES;
    long hRow = (long) ffn * Float.BYTES;
    long xsRow = LaunchPlan.splitBytesPerRow(hidden);
    long hsRow = LaunchPlan.splitBytesPerRow(ffn);
    for (LaunchPlan.Launch l : launches.gateUp()) {
      int[] n = {l.rows()};
      int[] vec = {l.vectorized() ? 1 : 0};
      CUdeviceptr in = x.ptr.withByteOffset(l.rowStart() * xRow);
      launch(l, switch (l.kind()) {
        case F32 -> Pointer.to(Pointer.to(w1), Pointer.to(w3), Pointer.to(in),
            Pointer.to(h.ptr.withByteOffset(l.rowStart() * hRow)), Pointer.to(n), Pointer.to(new int[] {ffn}),
            Pointer.to(new int[] {hidden}), Pointer.to(vec));
        case SPLIT -> Pointer.to(Pointer.to(in), Pointer.to(xSplit.ptr.withByteOffset(l.rowStart() * xsRow)),
            Pointer.to(n), Pointer.to(new int[] {hidden}), Pointer.to(vec), Pointer.to(geoHidden));
        case BF16_DECODE -> Pointer.to(Pointer.to(w1), Pointer.to(w3), Pointer.to(in),
            Pointer.to(h.ptr.withByteOffset(l.rowStart() * hRow)), Pointer.to(n), Pointer.to(new int[] {ffn}),
            Pointer.to(new int[] {hidden}), Pointer.to(vec), Pointer.to(geoHidden));
        case BF16_PREFILL -> Pointer.to(Pointer.to(w1), Pointer.to(w3),
            Pointer.to(xSplit.ptr.withByteOffset(l.rowStart() * xsRow)),
            Pointer.to(hSplit.ptr.withByteOffset(l.rowStart() * hsRow)), Pointer.to(partials.ptr),
            Pointer.to(counters.ptr), Pointer.to(n), Pointer.to(new int[] {ffn}), Pointer.to(new int[] {hidden}),
            Pointer.to(vec), Pointer.to(geoHidden));
      });
    }
    for (LaunchPlan.Launch l : launches.down()) {
      int[] n = {l.rows()};
      int[] vec = {l.vectorized() ? 1 : 0};
      CUdeviceptr out = y.ptr.withByteOffset(l.rowStart() * xRow);
      launch(l, switch (l.kind()) {
        case F32 -> Pointer.to(Pointer.to(w2), Pointer.to(h.ptr.withByteOffset(l.rowStart() * hRow)), Pointer.to(out),
            Pointer.to(n), Pointer.to(new int[] {hidden}), Pointer.to(new int[] {ffn}), Pointer.to(vec));
        case BF16_DECODE -> Pointer.to(Pointer.to(w2), Pointer.to(h.ptr.withByteOffset(l.rowStart() * hRow)),
            Pointer.to(out), Pointer.to(n), Pointer.to(new int[] {hidden}), Pointer.to(new int[] {ffn}),
            Pointer.to(vec), Pointer.to(geoFfn));
        case BF16_PREFILL -> Pointer.to(Pointer.to(w2), Pointer.to(hSplit.ptr.withByteOffset(l.rowStart() * hsRow)),
            Pointer.to(out), Pointer.to(partials.ptr), Pointer.to(counters.ptr), Pointer.to(n),
            Pointer.to(new int[] {hidden}), Pointer.to(new int[] {ffn}), Pointer.to(vec), Pointer.to(geoFfn));
        case SPLIT -> throw new IllegalStateException("the down product takes the split h of gate/up");
      });
    }
  }

  /**
   * Device time of one expert FFN over {@code rows} rows, in seconds: the kernels alone (no host
   * copies), over every expert of {@code resident} in turn (more bytes than the L2 cache holds,
   * so weights come from memory as in serving). The FFNs are captured once in a CUDA graph and
   * the graph is replayed, so that host launch overhead, which at batch 1 is larger than the
   * kernels, stays out of the figure; the result is the median over {@code repetitions} replays,
   * after about half a second of replays that bring the clocks up. For benchmarks. Compute thread.
   */
  double kernelSeconds(List<DeviceWeightTier.Lease<CUdeviceptr>> resident, List<ExpertWeights> weights, int rows,
      int repetitions) {
    FfnLaunches launches = FfnLaunches.of(weights.get(0), rows); // every expert of a bench has one shape
    prepare(weights.get(0), rows, launches);
    cuStreamSynchronize(computeStream);
    CUgraph graph = new CUgraph();
    CUgraphExec exec = new CUgraphExec();
    CUevent start = new CUevent();
    CUevent end = new CUevent();
    cuEventCreate(start, CUevent_flags.CU_EVENT_DEFAULT);
    cuEventCreate(end, CUevent_flags.CU_EVENT_DEFAULT);
    try {
      cuStreamBeginCapture(computeStream, CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_THREAD_LOCAL);
      for (int i = 0; i < resident.size(); i++) {
        launchFfn(resident.get(i).block(), resident.get(i).layout(), weights.get(i), launches);
      }
      cuStreamEndCapture(computeStream, graph);
      cuGraphInstantiate(exec, graph, 0);
      long warmUntil = System.nanoTime() + 500_000_000L;
      while (System.nanoTime() < warmUntil) {
        cuGraphLaunch(exec, computeStream);
        cuStreamSynchronize(computeStream);
      }
      double[] seconds = new double[repetitions];
      for (int r = 0; r < repetitions; r++) {
        cuEventRecord(start, computeStream);
        cuGraphLaunch(exec, computeStream);
        cuEventRecord(end, computeStream);
        cuEventSynchronize(end);
        float[] millis = {0};
        cuEventElapsedTime(millis, start, end);
        seconds[r] = millis[0] / 1e3 / resident.size();
      }
      Arrays.sort(seconds);
      return seconds[repetitions / 2];
    } finally {
      cuEventDestroy(start);
      cuEventDestroy(end);
      cuGraphExecDestroy(exec);
      cuGraphDestroy(graph);
    }
  }

  /**
   * Like {@link #kernelSeconds} but with each kernel launched from the host as in serving, so
   * host launch overhead counts: time per FFN over {@code repetitions} passes. Compute thread.
   */
  double launchedSeconds(List<DeviceWeightTier.Lease<CUdeviceptr>> resident, List<ExpertWeights> weights, int rows,
      int repetitions) {
    FfnLaunches launches = FfnLaunches.of(weights.get(0), rows); // every expert of a bench has one shape
    prepare(weights.get(0), rows, launches);
    CUevent start = new CUevent();
    CUevent end = new CUevent();
    cuEventCreate(start, CUevent_flags.CU_EVENT_DEFAULT);
    cuEventCreate(end, CUevent_flags.CU_EVENT_DEFAULT);
    try {
      cuEventRecord(start, computeStream);
      for (int r = 0; r < repetitions; r++) {
        for (int i = 0; i < resident.size(); i++) {
          launchFfn(resident.get(i).block(), resident.get(i).layout(), weights.get(i), launches);
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
    cuLaunchKernel(functions.get(l.kernel()), l.gridX(), l.gridY(), l.gridZ(), l.blockX(), 1, 1, l.sharedBytes(),
        computeStream, params, null);
  }

  private void freeActivations() {
    for (DeviceBuffer b : List.of(x, h, y, xSplit, hSplit, partials, counters)) {
      b.free();
    }
    if (hostIn != null) {
      cuMemFreeHost(hostIn);
      cuMemFreeHost(hostOut);
      hostIn = null;
      hostOut = null;
      hostBytes = 0;
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
        freeActivations();
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
        registrations.clear();
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

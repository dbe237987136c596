package io.moecluster.core.kernel;

import java.util.concurrent.atomic.AtomicBoolean;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/** Picks the kernel implementation for this JVM and machine. */
public final class KernelsFactory {
  private static final Logger log = LoggerFactory.getLogger(KernelsFactory.class);
  private static final AtomicBoolean LOGGED = new AtomicBoolean();

  private KernelsFactory() {}

  /**
   * The production kernels ({@link VectorKernels}) on {@code threads} threads, or on
   * {@link Runtime#availableProcessors()} threads when {@code threads <= 0}. The caller owns the
   * result and closes it (it holds a thread pool). The choice is logged once per JVM.
   */
  public static VectorKernels create(int threads) {
    int n = threads > 0 ? threads : Runtime.getRuntime().availableProcessors();
    VectorKernels kernels = new VectorKernels(n);
    if (LOGGED.compareAndSet(false, true)) {
      log.info("Kernels: {} with species {} ({} float lanes), {} thread(s)",
          VectorKernels.class.getSimpleName(), VectorKernels.F, VectorKernels.VL, n);
    }
    return kernels;
  }
}

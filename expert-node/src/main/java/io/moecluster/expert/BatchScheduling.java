package io.moecluster.expert;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;
import java.util.Locale;
import java.util.Optional;

/**
 * Puts the threads that compute expert FFNs under Linux's {@code SCHED_BATCH} policy
 * ({@code moe.expert.batch-scheduling}).
 *
 * <p>Why: a batch thread gets the same share of the CPU as before, but its wake-up does not
 * preempt the thread running on the core it lands on; it runs when a core is free or at the next
 * scheduling point. Where an expert node shares cores with a router (the local cluster, a small
 * machine), the router flushes a layer's calls to one node, then to the next. Measured on 2 cores,
 * the first node's woken reader often took the router's core for the length of an expert's product
 * before the router could flush the second call (docs/PERFORMANCE.md). The experts' threads are
 * throughput work; the router's are on every token's path.
 *
 * <p>The policy is per thread: each computing thread sets it on itself once, the first time it
 * computes. Elsewhere than on Linux, or where the call fails, nothing changes.
 */
final class BatchScheduling {
  private static final int SCHED_BATCH = 3;
  private static final MethodHandle SET_SCHEDULER = lookUp().orElse(null);
  private static final ThreadLocal<Boolean> APPLIED = ThreadLocal.withInitial(() -> false);
  private static volatile boolean enabled;

  private BatchScheduling() {}

  /** Whether computing threads should switch to {@code SCHED_BATCH} from now on. */
  static void enable(boolean on) {
    enabled = on;
  }

  /** Whether this platform can set the policy (Linux with its C library's {@code sched_setscheduler}). */
  static boolean available() {
    return SET_SCHEDULER != null;
  }

  /** Called by a thread about to compute: sets its policy once, when enabled. */
  static void applyToCurrentThread() {
    if (!enabled || APPLIED.get()) {
      return;
    }
    APPLIED.set(true);
    setCurrentThread();
  }

  /** Sets the calling thread's policy to {@code SCHED_BATCH}; false where it cannot. */
  static boolean setCurrentThread() {
    if (SET_SCHEDULER == null) {
      return false;
    }
    try (Arena arena = Arena.ofConfined()) {
      MemorySegment param = arena.allocate(JAVA_INT); // struct sched_param { int sched_priority = 0; }
      return (int) SET_SCHEDULER.invokeExact(0, SCHED_BATCH, param) == 0; // pid 0: the calling thread
    } catch (Throwable t) {
      return false;
    }
  }

  private static Optional<MethodHandle> lookUp() {
    if (!System.getProperty("os.name", "").toLowerCase(Locale.ROOT).startsWith("linux")) {
      return Optional.empty();
    }
    try {
      Linker linker = Linker.nativeLinker();
      return linker.defaultLookup().find("sched_setscheduler").map(symbol -> linker.downcallHandle(symbol,
          FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT, ADDRESS)));
    } catch (RuntimeException | LinkageError e) {
      return Optional.empty();
    }
  }
}

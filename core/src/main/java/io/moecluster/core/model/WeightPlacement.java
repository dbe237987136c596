package io.moecluster.core.model;

import java.lang.management.ManagementFactory;
import java.util.Locale;

/**
 * Where the weight matrices a process computes with live: in place in the memory-mapped checkpoint
 * ({@link #MAP}), or copied into memory of the process's own ({@link #COPY}); {@link #AUTO} copies
 * when the copies take at most half of the memory left beside the Java heap.
 *
 * <p>Why copy at all: a copy cannot be evicted by other processes' memory pressure and refaulted
 * in the middle of a generation, as the page cache can; and decode ran 1.05x faster on copies at the
 * median of six alternated pairs on the machine measured (docs/PERFORMANCE.md, "Weights copied
 * into memory"), more than the few per cent by which a plain read loop reads the page cache more
 * slowly. Mapping stays for checkpoints that do not fit: the page cache then holds what it can.
 */
public enum WeightPlacement {
  AUTO,
  COPY,
  MAP;

  /** Parses {@code auto}, {@code copy} or {@code map} (any case); anything else names the choices. */
  public static WeightPlacement parse(String text) {
    if (text != null) {
      for (WeightPlacement p : values()) {
        if (p.name().equalsIgnoreCase(text.strip())) {
          return p;
        }
      }
    }
    throw new IllegalArgumentException("weights must be one of auto, copy, map; got '" + text + "'");
  }

  /** Whether {@code bytes} of weights are copied on this machine. */
  public boolean copies(long bytes) {
    return copies(bytes, memoryForCopies());
  }

  /** Whether {@code bytes} of weights are copied when {@code memory} bytes lie outside the heap. */
  public boolean copies(long bytes, long memory) {
    return switch (this) {
      case COPY -> true;
      case MAP -> false;
      case AUTO -> bytes <= memory / 2;
    };
  }

  /**
   * The memory of this machine, or of this container when it is limited (the JDK reads the cgroup
   * limit), less the largest heap the JVM may grow to.
   */
  public static long memoryForCopies() {
    long total = ((com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean())
        .getTotalMemorySize();
    return Math.max(0, total - Runtime.getRuntime().maxMemory());
  }

  /** The setting's spelling: {@code auto}, {@code copy}, {@code map}. */
  public String configValue() {
    return name().toLowerCase(Locale.ROOT);
  }
}

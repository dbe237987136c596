package io.moecluster.core.kernel.bench;

import io.moecluster.core.kernel.MemoryBandwidth;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.Locale;

/**
 * Read bandwidth of a file mapping (the page cache, read through a plain native view as the
 * kernels read a checkpoint) against anonymous memory (what a weight copy is), alternating in one
 * JVM: the measurement behind {@code WeightPlacement}. Arguments: threads, rounds, GiB, and
 * optionally an existing file of at least that size to map (e.g. a checkpoint) instead of a fresh
 * temporary file.
 */
final class MappedReadBandwidth {
  private MappedReadBandwidth() {}

  public static void main(String[] args) throws IOException {
    int threads = args.length > 0 ? Integer.parseInt(args[0]) : Runtime.getRuntime().availableProcessors();
    int rounds = args.length > 1 ? Integer.parseInt(args[1]) : 9;
    long bytes = (args.length > 2 ? Long.parseLong(args[2]) : 1L) << 30;
    Path given = args.length > 3 ? Path.of(args[3]) : null;
    Path file = given != null ? given : Files.createTempFile("moe-mapped-read", ".bin");
    try (Arena arena = Arena.ofShared();
        FileChannel ch = given != null ? FileChannel.open(file, StandardOpenOption.READ)
            : FileChannel.open(file, StandardOpenOption.READ, StandardOpenOption.WRITE)) {
      if (given == null) {
        ByteBuffer ones = ByteBuffer.allocateDirect(1 << 20);
        while (ones.hasRemaining()) {
          ones.put((byte) 1);
        }
        for (long off = 0; off < bytes; off += ones.capacity()) {
          ch.write(ones.clear(), off);
        }
      } else if (ch.size() < bytes) {
        throw new IllegalArgumentException(file + " holds " + ch.size() + " bytes, fewer than " + bytes);
      }
      MemorySegment mapping = ch.map(FileChannel.MapMode.READ_ONLY, 0, bytes, arena);
      MemorySegment view = MemorySegment.ofAddress(mapping.address()).reinterpret(bytes);
      MemorySegment anonymous = arena.allocate(bytes, 4096);
      anonymous.fill((byte) 1);
      double[] mapped = new double[rounds];
      double[] anon = new double[rounds];
      for (int r = 0; r < rounds; r++) {
        mapped[r] = MemoryBandwidth.measureReadGBps(view, threads, 3);
        anon[r] = MemoryBandwidth.measureReadGBps(anonymous, threads, 3);
      }
      double[] ratios = new double[rounds];
      for (int r = 0; r < rounds; r++) {
        ratios[r] = mapped[r] / anon[r];
      }
      System.out.printf(Locale.ROOT, "threads %d, %d GiB of %s, %d alternated rounds (each a median of 3 passes)%n",
          threads, bytes >> 30, given != null ? given : "a fresh temporary file", rounds);
      System.out.printf(Locale.ROOT, "file mapping      median %.1f GB/s (%.1f-%.1f)%n", median(mapped), min(mapped),
          max(mapped));
      System.out.printf(Locale.ROOT, "anonymous memory  median %.1f GB/s (%.1f-%.1f)%n", median(anon), min(anon),
          max(anon));
      System.out.printf(Locale.ROOT, "mapping / anonymous: median of the per-round ratios %.2f%n", median(ratios));
    } finally {
      if (given == null) {
        Files.deleteIfExists(file);
      }
    }
  }

  /** The median of the values (the mean of the middle two for an even count); also for LoadWorkCost and DecodePasses. */
  static double median(double[] v) {
    double[] s = v.clone();
    Arrays.sort(s);
    return s.length % 2 == 1 ? s[s.length / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  }

  static double min(double[] v) {
    return Arrays.stream(v).min().orElse(Double.NaN);
  }

  static double max(double[] v) {
    return Arrays.stream(v).max().orElse(Double.NaN);
  }
}

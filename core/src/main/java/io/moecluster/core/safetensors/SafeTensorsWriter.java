package io.moecluster.core.safetensors;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.moecluster.core.tensor.DType;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.TreeMap;

/**
 * Writes checkpoints in the safetensors format, one file or Hugging Face style shards with an
 * index: for test fixtures, synthetic models and conversions. Tensors are streamed one at a time
 * through a {@link TensorFiller}, so only one tensor's floats are ever in memory.
 */
public final class SafeTensorsWriter {
  private SafeTensorsWriter() {}

  /** Data is written through a buffer of this size; big enough to amortise the system calls. */
  private static final int BUFFER_BYTES = 1 << 20;

  /** Every header is padded to this, so the data section (and F32 tensors) stay aligned. */
  private static final int ALIGNMENT = 8;

  /** One tensor to write: its name, stored dtype and shape. */
  public record TensorSpec(String name, DType dtype, long[] shape) {
    public TensorSpec {
      Objects.requireNonNull(name, "name");
      Objects.requireNonNull(dtype, "dtype");
      shape = shape.clone();
      for (long d : shape) {
        if (d < 0) {
          throw new IllegalArgumentException(
              name + ": negative dimension in " + Shapes.format(shape));
        }
      }
    }

    @Override
    public long[] shape() {
      return shape.clone();
    }

    public long elementCount() {
      return Shapes.elementCount(shape);
    }

    /** Size of the stored data. */
    public long byteSize() {
      return Math.multiplyExact(elementCount(), dtype.byteSize());
    }

    @Override
    public boolean equals(Object o) {
      return o instanceof TensorSpec s
          && name.equals(s.name)
          && dtype == s.dtype
          && Arrays.equals(shape, s.shape);
    }

    @Override
    public int hashCode() {
      return Objects.hash(name, dtype, Arrays.hashCode(shape));
    }

    @Override
    public String toString() {
      return name + " " + dtype + Shapes.format(shape);
    }
  }

  /**
   * Supplies a tensor's values: fills {@code values} ({@code values.length == spec.elementCount()},
   * row-major) as floats; the writer converts them to the spec's dtype (BF16 rounds to nearest even
   * via {@link io.moecluster.core.tensor.BFloat16#fromFloat}, F16 via {@link
   * Float#floatToFloat16}).
   */
  @FunctionalInterface
  public interface TensorFiller {
    void fill(TensorSpec spec, float[] values);
  }

  /**
   * Writes {@code specs}, in order, under {@code dir} (created if needed). With {@code shards ==
   * 1}: {@code dir/model.safetensors}. With {@code shards > 1}: {@code
   * model-00001-of-0000K.safetensors} ... split into contiguous runs of about equal size, plus
   * {@code model.safetensors.index.json} ({@code
   * {"metadata":{"total_size":N},"weight_map":{...}}}). {@code metadata} goes into every file's
   * {@code "__metadata__"}. With one shard, a stale index in {@code dir} is deleted so that the
   * directory reads back as this checkpoint. Each file is written to a temporary name and renamed
   * when complete, so a failed write leaves no plausible-looking file.
   *
   * @return the files written, shards in order, then the index if any
   * @throws IllegalArgumentException for duplicate names, tensors too big for a float[], or more
   *     shards than tensors
   * @throws UncheckedIOException if a file cannot be written
   */
  public static List<Path> write(
      Path dir,
      List<TensorSpec> specs,
      int shards,
      TensorFiller filler,
      Map<String, String> metadata) {
    Objects.requireNonNull(filler, "filler");
    Map<String, String> meta = metadata == null ? Map.of() : Map.copyOf(metadata); // no nulls
    checkSpecs(specs, shards);
    try {
      Files.createDirectories(dir);
      if (shards == 1) {
        // A stale index would make SafeTensors.open(dir) read the old shards instead of this file.
        Files.deleteIfExists(dir.resolve(SafeTensors.INDEX_FILE));
      }
      List<List<TensorSpec>> groups = split(specs, shards);
      List<Path> written = new ArrayList<>();
      Map<String, String> weightMap = new TreeMap<>();
      long totalSize = 0;
      for (int i = 0; i < groups.size(); i++) {
        String fileName =
            shards == 1
                ? SafeTensors.SINGLE_FILE
                : String.format("model-%05d-of-%05d.safetensors", i + 1, shards);
        Path file = dir.resolve(fileName);
        writeFile(file, groups.get(i), filler, meta);
        written.add(file);
        for (TensorSpec s : groups.get(i)) {
          weightMap.put(s.name(), fileName);
          totalSize += s.byteSize();
        }
      }
      if (shards > 1) {
        Path index = dir.resolve(SafeTensors.INDEX_FILE);
        ObjectNode root = SafeTensorsHeader.JSON.createObjectNode();
        root.putObject("metadata").put("total_size", totalSize);
        ObjectNode wm = root.putObject("weight_map");
        weightMap.forEach(wm::put);
        byte[] json =
            SafeTensorsHeader.JSON.writerWithDefaultPrettyPrinter().writeValueAsBytes(root);
        Path tmp = tempFor(index);
        Files.write(tmp, json);
        Files.move(tmp, index, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        written.add(index);
      }
      return List.copyOf(written);
    } catch (IOException e) {
      throw new UncheckedIOException(
          "cannot write safetensors to " + dir + ": " + e.getMessage(), e);
    }
  }

  private static void checkSpecs(List<TensorSpec> specs, int shards) {
    if (shards < 1) {
      throw new IllegalArgumentException("shards must be >= 1, not " + shards);
    }
    if (shards > 1 && shards > specs.size()) {
      throw new IllegalArgumentException(
          "cannot split " + specs.size() + " tensors into " + shards + " non-empty shards");
    }
    Set<String> seen = new HashSet<>();
    for (TensorSpec s : specs) {
      if (s.name().equals("__metadata__")) {
        throw new IllegalArgumentException("'__metadata__' is reserved and cannot name a tensor");
      }
      if (!seen.add(s.name())) {
        throw new IllegalArgumentException("duplicate tensor name '" + s.name() + "'");
      }
      long count;
      try {
        count = s.elementCount();
        s.byteSize();
      } catch (ArithmeticException e) {
        throw new IllegalArgumentException(s + ": shape overflows", e);
      }
      if (count > Integer.MAX_VALUE - 8) {
        throw new IllegalArgumentException(
            s + ": " + count + " elements are too many to fill through a float[]");
      }
    }
  }

  /**
   * Splits {@code specs} into {@code shards} contiguous, non-empty runs: run {@code k} starts at
   * the first tensor whose data would start at or past {@code k/shards} of the total size.
   */
  static List<List<TensorSpec>> split(List<TensorSpec> specs, int shards) {
    if (shards == 1) {
      return List.of(specs);
    }
    long total = specs.stream().mapToLong(TensorSpec::byteSize).sum();
    int n = specs.size();
    long[] starts = new long[n]; // cumulative bytes before each tensor
    for (int j = 1; j < n; j++) {
      starts[j] = starts[j - 1] + specs.get(j - 1).byteSize();
    }
    List<List<TensorSpec>> groups = new ArrayList<>();
    int from = 0;
    for (int k = 1; k <= shards; k++) {
      int to;
      if (k == shards) {
        to = n;
      } else {
        // Leave at least one tensor for each later shard, take at least one for this one.
        int min = from + 1;
        int max = n - (shards - k);
        to = min;
        double boundary = (double) total * k / shards;
        while (to < max && starts[to] < boundary) {
          to++;
        }
      }
      groups.add(specs.subList(from, to));
      from = to;
    }
    return groups;
  }

  private static void writeFile(
      Path file, List<TensorSpec> specs, TensorFiller filler, Map<String, String> metadata)
      throws IOException {
    byte[] header = header(specs, metadata);
    Path tmp = tempFor(file);
    try (FileChannel ch =
        FileChannel.open(
            tmp,
            StandardOpenOption.CREATE,
            StandardOpenOption.TRUNCATE_EXISTING,
            StandardOpenOption.WRITE)) {
      ByteBuffer buf = ByteBuffer.allocate(BUFFER_BYTES).order(ByteOrder.LITTLE_ENDIAN);
      buf.putLong(header.length).flip();
      writeFully(ch, buf);
      writeFully(ch, ByteBuffer.wrap(header));
      for (TensorSpec spec : specs) {
        float[] values = new float[(int) spec.elementCount()];
        filler.fill(spec, values);
        for (int from = 0; from < values.length; ) {
          from = Floats.encode(values, from, spec.dtype(), buf);
          writeFully(ch, buf);
        }
      }
      ch.force(false);
    } catch (IOException | RuntimeException e) {
      Files.deleteIfExists(tmp);
      throw e;
    }
    Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
  }

  /** The header JSON, space-padded so that {@code 8 + length} is a multiple of 8. */
  static byte[] header(List<TensorSpec> specs, Map<String, String> metadata)
      throws JsonProcessingException {
    ObjectNode root = SafeTensorsHeader.JSON.createObjectNode();
    if (!metadata.isEmpty()) {
      ObjectNode meta = root.putObject("__metadata__");
      new TreeMap<>(metadata).forEach(meta::put);
    }
    long offset = 0;
    for (TensorSpec s : specs) {
      ObjectNode t = root.putObject(s.name());
      t.put("dtype", s.dtype().safetensorsName());
      ArrayNode shape = t.putArray("shape");
      for (long d : s.shape()) {
        shape.add(d);
      }
      long end = offset + s.byteSize();
      t.putArray("data_offsets").add(offset).add(end);
      offset = end;
    }
    String json = SafeTensorsHeader.JSON.writeValueAsString(root);
    byte[] raw = json.getBytes(StandardCharsets.UTF_8);
    int padded = (raw.length + ALIGNMENT - 1) / ALIGNMENT * ALIGNMENT;
    byte[] out = Arrays.copyOf(raw, padded);
    Arrays.fill(out, raw.length, padded, (byte) ' ');
    return out;
  }

  private static void writeFully(FileChannel ch, ByteBuffer buf) throws IOException {
    while (buf.hasRemaining()) {
      ch.write(buf);
    }
  }

  private static Path tempFor(Path file) {
    return file.resolveSibling("." + file.getFileName() + ".partial");
  }
}

package io.moecluster.core.model;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.moecluster.core.checkpoint.CheckpointSpec;
import io.moecluster.core.checkpoint.CheckpointWriter;
import io.moecluster.core.checkpoint.Preset;
import io.moecluster.core.config.ModelFamily;
import io.moecluster.core.tensor.DType;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.Consumer;
import java.util.stream.Stream;

/**
 * Random checkpoints written by {@link CheckpointWriter}, shared by every test of the JVM (a SMALL
 * checkpoint is ~280 MB in F32 and takes seconds to write, so each spec is written once, into one
 * temporary directory removed when the JVM exits), plus checkpoint surgery for the failure tests
 * (a copy with a tensor dropped or misshapen, an edited config.json).
 */
public final class TestCheckpoints {
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final Map<String, Path> WRITTEN = new ConcurrentHashMap<>();
  private static volatile Path root;

  private TestCheckpoints() {}

  /** The checkpoint of this spec (written on first use, then shared). Treat it as read-only. */
  public static Path get(Preset preset, ModelFamily family, DType dtype, long seed, int shards) {
    String key = preset + "-" + family + "-" + dtype + "-" + seed + "-" + shards;
    return WRITTEN.computeIfAbsent(
        key,
        k -> {
          Path dir = root().resolve(k);
          CheckpointWriter.write(new CheckpointSpec(preset, family, dtype, seed, shards, null), dir);
          return dir;
        });
  }

  public static Path get(Preset preset, ModelFamily family, DType dtype) {
    return get(preset, family, dtype, 42L, 1);
  }

  private static synchronized Path root() {
    if (root == null) {
      try {
        root = Files.createTempDirectory("moe-reference-tests");
      } catch (IOException e) {
        throw new UncheckedIOException(e);
      }
      Path r = root;
      Runtime.getRuntime().addShutdownHook(new Thread(() -> deleteTree(r)));
    }
    return root;
  }

  static void deleteTree(Path dir) {
    try (Stream<Path> walk = Files.walk(dir)) {
      walk.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
    } catch (IOException ignored) {
      // best effort
    }
  }

  /**
   * Copies a single-file checkpoint's config, tokenizer and weights into {@code to}, letting
   * {@code edit} change the tensor list (raw safetensors, independent of the project's writer).
   */
  public static Path copyWithTensors(Path from, Path to, Consumer<List<RawTensor>> edit) {
    try {
      Files.createDirectories(to);
      try (Stream<Path> files = Files.list(from)) {
        for (Path f : files.toList()) {
          String name = f.getFileName().toString();
          if (!name.endsWith(".safetensors") && !name.endsWith(".index.json")) {
            Files.copy(f, to.resolve(name));
          }
        }
      }
      List<RawTensor> tensors = readSafetensors(from.resolve("model.safetensors"));
      edit.accept(tensors);
      writeSafetensors(to.resolve("model.safetensors"), tensors);
      return to;
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /** Rewrites keys of {@code dir/config.json}. */
  public static void editConfig(Path dir, Consumer<ObjectNode> edit) {
    try {
      Path file = dir.resolve("config.json");
      ObjectNode config = (ObjectNode) JSON.readTree(Files.readString(file));
      edit.accept(config);
      Files.writeString(file, JSON.writerWithDefaultPrettyPrinter().writeValueAsString(config));
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /** Copies a single-file checkpoint unchanged and edits its config.json. */
  public static Path copyWithConfig(Path from, Path to, Consumer<ObjectNode> edit) {
    copyWithTensors(from, to, ts -> {});
    editConfig(to, edit);
    return to;
  }

  /** One tensor of a safetensors file, with its raw little-endian bytes. */
  public record RawTensor(String name, String dtype, long[] shape, byte[] data) {
    /** The same F32 values stored as {@code F16} or {@code BF16} (rounded to nearest even). */
    public RawTensor convertedFromF32(String newDtype) {
      if (!dtype.equals("F32")) {
        throw new IllegalStateException(name + " is " + dtype);
      }
      if (newDtype.equals("F32")) {
        return this;
      }
      ByteBuffer in = ByteBuffer.wrap(data).order(ByteOrder.LITTLE_ENDIAN);
      ByteBuffer out = ByteBuffer.allocate(data.length / 2).order(ByteOrder.LITTLE_ENDIAN);
      for (int i = 0; i < data.length / 4; i++) {
        float v = in.getFloat(i * 4);
        out.putShort(
            newDtype.equals("F16") ? Float.floatToFloat16(v) : io.moecluster.core.tensor.BFloat16.fromFloat(v));
      }
      return new RawTensor(name, newDtype, shape, out.array());
    }

    /** A zero tensor of the same dtype and a different shape. */
    public RawTensor reshaped(long... newShape) {
      long count = 1;
      for (long d : newShape) {
        count *= d;
      }
      int elementBytes = dtype.equals("F32") ? 4 : 2;
      return new RawTensor(name, dtype, newShape, new byte[(int) (count * elementBytes)]);
    }
  }

  /** An F32 tensor of uniform values in {@code center ± halfWidth}, a pure function of the seed. */
  public static RawTensor randomF32(String name, long seed, float center, float halfWidth, long... shape) {
    long count = 1;
    for (long d : shape) {
      count *= d;
    }
    java.util.SplittableRandom r = new java.util.SplittableRandom(seed ^ name.hashCode());
    ByteBuffer b = ByteBuffer.allocate((int) count * 4).order(ByteOrder.LITTLE_ENDIAN);
    for (long i = 0; i < count; i++) {
      b.putFloat(center + (float) ((r.nextDouble() * 2 - 1) * halfWidth));
    }
    return new RawTensor(name, "F32", shape, b.array());
  }

  static List<RawTensor> readSafetensors(Path file) throws IOException {
    byte[] all = Files.readAllBytes(file);
    long headerLen = ByteBuffer.wrap(all, 0, 8).order(ByteOrder.LITTLE_ENDIAN).getLong();
    JsonNode header = JSON.readTree(new String(all, 8, (int) headerLen, StandardCharsets.UTF_8));
    int dataStart = 8 + (int) headerLen;
    List<RawTensor> out = new ArrayList<>();
    for (Iterator<Map.Entry<String, JsonNode>> it = header.fields(); it.hasNext(); ) {
      Map.Entry<String, JsonNode> e = it.next();
      if (e.getKey().equals("__metadata__")) {
        continue;
      }
      JsonNode t = e.getValue();
      long[] shape = new long[t.get("shape").size()];
      for (int i = 0; i < shape.length; i++) {
        shape[i] = t.get("shape").get(i).asLong();
      }
      int begin = t.get("data_offsets").get(0).asInt();
      int end = t.get("data_offsets").get(1).asInt();
      byte[] data = new byte[end - begin];
      System.arraycopy(all, dataStart + begin, data, 0, data.length);
      out.add(new RawTensor(e.getKey(), t.get("dtype").asText(), shape, data));
    }
    return out;
  }

  static void writeSafetensors(Path file, List<RawTensor> tensors) throws IOException {
    ObjectNode header = JSON.createObjectNode();
    header.putObject("__metadata__").put("format", "pt");
    long offset = 0;
    for (RawTensor t : tensors) {
      ObjectNode o = header.putObject(t.name());
      o.put("dtype", t.dtype());
      ArrayNode shape = o.putArray("shape");
      for (long d : t.shape()) {
        shape.add(d);
      }
      o.putArray("data_offsets").add(offset).add(offset + t.data().length);
      offset += t.data().length;
    }
    StringBuilder text = new StringBuilder(JSON.writeValueAsString(header));
    while (text.toString().getBytes(StandardCharsets.UTF_8).length % 8 != 0) {
      text.append(' ');
    }
    byte[] h = text.toString().getBytes(StandardCharsets.UTF_8);
    try (var out = Files.newOutputStream(file)) {
      out.write(ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(h.length).array());
      out.write(h);
      for (RawTensor t : tensors) {
        out.write(t.data());
      }
    }
  }
}

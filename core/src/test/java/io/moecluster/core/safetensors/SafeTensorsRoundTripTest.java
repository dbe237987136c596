package io.moecluster.core.safetensors;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.moecluster.core.safetensors.SafeTensorsWriter.TensorSpec;
import io.moecluster.core.tensor.BFloat16;
import io.moecluster.core.tensor.DType;
import io.moecluster.core.tensor.Matrix;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.TreeSet;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

class SafeTensorsRoundTripTest {
  @TempDir Path dir;

  /** Deterministic values per tensor, so the reader can be checked without keeping them. */
  static float value(TensorSpec spec, int i) {
    return (float) new SplittableRandom(spec.name().hashCode() * 31L + i).nextGaussian() * 3f;
  }

  static final SafeTensorsWriter.TensorFiller FILLER =
      (spec, values) -> {
        for (int i = 0; i < values.length; i++) {
          values[i] = value(spec, i);
        }
      };

  /** What reading back must give for a value stored as {@code dtype}. */
  static float stored(DType dtype, float x) {
    return switch (dtype) {
      case F32 -> x;
      case BF16 -> BFloat16.round(x);
      case F16 -> Float.float16ToFloat(Float.floatToFloat16(x));
    };
  }

  static List<TensorSpec> model(DType dtype) {
    return List.of(
        new TensorSpec("model.embed_tokens.weight", dtype, new long[] {32, 16}),
        new TensorSpec("model.layers.0.self_attn.q_proj.weight", dtype, new long[] {16, 16}),
        new TensorSpec("model.layers.0.input_layernorm.weight", dtype, new long[] {16}),
        new TensorSpec("model.layers.0.mlp.experts.0.w1.weight", dtype, new long[] {24, 16}),
        new TensorSpec("model.norm.weight", dtype, new long[] {16}),
        new TensorSpec("lm_head.weight", dtype, new long[] {32, 16}));
  }

  @ParameterizedTest
  @EnumSource(DType.class)
  void roundTripSingleFile(DType dtype) throws IOException {
    List<TensorSpec> specs = model(dtype);
    List<Path> files = SafeTensorsWriter.write(dir, specs, 1, FILLER, Map.of("format", "pt"));
    assertEquals(List.of(dir.resolve("model.safetensors")), files);
    try (SafeTensors st = SafeTensors.open(dir)) {
      assertEquals(files, st.files());
      assertEquals(Files.size(files.get(0)), st.totalBytes());
      checkAll(st, specs);
    }
  }

  @ParameterizedTest
  @EnumSource(DType.class)
  void roundTripThreeShards(DType dtype) throws IOException {
    List<TensorSpec> specs = model(dtype);
    List<Path> files = SafeTensorsWriter.write(dir, specs, 3, FILLER, Map.of("format", "pt"));
    List<Path> shards =
        List.of(
            dir.resolve("model-00001-of-00003.safetensors"),
            dir.resolve("model-00002-of-00003.safetensors"),
            dir.resolve("model-00003-of-00003.safetensors"));
    Path index = dir.resolve("model.safetensors.index.json");
    List<Path> expectedFiles = new ArrayList<>(shards);
    expectedFiles.add(index);
    assertEquals(expectedFiles, files);

    JsonNode json = new ObjectMapper().readTree(index.toFile());
    long dataBytes = specs.stream().mapToLong(TensorSpec::byteSize).sum();
    assertEquals(dataBytes, json.get("metadata").get("total_size").longValue());
    JsonNode weightMap = json.get("weight_map");
    assertEquals(specs.size(), weightMap.size());
    Set<String> used = new TreeSet<>();
    weightMap.properties().forEach(e -> used.add(e.getValue().textValue()));
    assertEquals(3, used.size(), "every shard holds something");

    try (SafeTensors st = SafeTensors.open(dir)) {
      assertEquals(shards, st.files());
      long sizes = 0;
      for (Path p : shards) {
        sizes += Files.size(p);
      }
      assertEquals(sizes, st.totalBytes());
      for (TensorSpec s : specs) {
        assertEquals(
            weightMap.get(s.name()).textValue(), st.info(s.name()).file().getFileName().toString());
      }
      checkAll(st, specs);
    }
    // Each shard is a valid safetensors file on its own, with the metadata.
    for (Path p : shards) {
      try (SafeTensors st = SafeTensors.open(p)) {
        assertFalse(st.names().isEmpty());
      }
      assertEquals("pt", headerJson(p).get("__metadata__").get("format").textValue());
      assertEquals(0, (8 + headerLength(p)) % 8, p + " data section aligned");
    }
  }

  private static void checkAll(SafeTensors st, List<TensorSpec> specs) {
    Set<String> names = new TreeSet<>();
    specs.forEach(s -> names.add(s.name()));
    assertEquals(List.copyOf(names), List.copyOf(st.names()), "names() sorted");
    for (TensorSpec s : specs) {
      assertTrue(st.contains(s.name()));
      TensorInfo info = st.info(s.name());
      assertEquals(s.dtype(), info.dtype());
      assertArrayEquals(s.shape(), info.shape());
      assertEquals(s.byteSize(), info.byteSize());
      assertEquals(s.elementCount(), info.elementCount());
      float[] got = st.floats(s.name(), s.shape());
      for (int i = 0; i < got.length; i++) {
        assertEquals(stored(s.dtype(), value(s, i)), got[i], s.name() + "[" + i + "]");
      }
      MemorySegment raw = st.bytes(s.name());
      assertTrue(raw.isReadOnly());
      assertTrue(st.isResident(raw), "bytes() is a view into the mapping (resident: just read)");
      assertFalse(raw.isMapped(), "a plain native segment, like the weight cache's copies (one class for the kernels)");
      assertEquals(info.byteSize(), raw.byteSize());
      if (s.shape().length == 2) {
        int rows = (int) s.shape()[0];
        int cols = (int) s.shape()[1];
        Matrix m = st.matrix(s.name(), rows, cols);
        assertEquals(s.name(), m.name());
        if (s.dtype() == DType.F16) {
          assertEquals(DType.F32, m.dtype(), "F16 widened");
          assertFalse(st.isResident(m.data()), "F16 is copied, outside the mapping");
        } else {
          assertEquals(s.dtype(), m.dtype());
          assertTrue(st.isResident(m.data()), "F32/BF16 is a view into the mapping");
          assertEquals(raw.address(), m.data().address());
        }
        for (int r = 0; r < rows; r++) {
          for (int c = 0; c < cols; c++) {
            assertEquals(got[r * cols + c], m.get(r, c));
          }
        }
      }
    }
  }

  @Test
  void dataSectionIsEightByteAligned() throws IOException {
    for (int nameLen = 1; nameLen <= 9; nameLen++) {
      Path sub = dir.resolve("a" + nameLen);
      String name = "t".repeat(nameLen);
      List<Path> files =
          SafeTensorsWriter.write(
              sub, List.of(new TensorSpec(name, DType.F32, new long[] {3})), 1, FILLER, Map.of());
      long headerLength = headerLength(files.get(0));
      assertEquals(0, (8 + headerLength) % 8, "name length " + nameLen);
      try (SafeTensors st = SafeTensors.open(files.get(0))) {
        assertEquals(8 + headerLength, st.info(name).fileOffset());
        assertEquals(0, st.info(name).fileOffset() % 8);
      }
    }
  }

  @Test
  void listsTheDtypesOfItsTensors() {
    List<Path> files = SafeTensorsWriter.write(dir, List.of(new TensorSpec("a", DType.BF16, new long[] {4}),
        new TensorSpec("b", DType.F32, new long[] {2}), new TensorSpec("c", DType.BF16, new long[] {2})), 1, FILLER,
        Map.of());
    try (SafeTensors st = SafeTensors.open(files.get(0))) {
      assertEquals(java.util.EnumSet.of(DType.BF16, DType.F32), st.dtypes());
    }
  }

  @Test
  void fillerIsCalledOncePerTensorInOrderWithExactSize() {
    List<TensorSpec> specs = model(DType.BF16);
    List<String> calls = new ArrayList<>();
    SafeTensorsWriter.write(
        dir,
        specs,
        2,
        (spec, values) -> {
          assertEquals(spec.elementCount(), values.length);
          calls.add(spec.name());
        },
        Map.of());
    assertEquals(specs.stream().map(TensorSpec::name).toList(), calls);
  }

  @Test
  void shardsSplitByCumulativeSizeAndNeverEmpty() {
    List<TensorSpec> specs =
        List.of(
            new TensorSpec("big", DType.F32, new long[] {1000}),
            new TensorSpec("a", DType.F32, new long[] {1}),
            new TensorSpec("b", DType.F32, new long[] {1}),
            new TensorSpec("c", DType.F32, new long[] {1000}));
    List<List<TensorSpec>> groups = SafeTensorsWriter.split(specs, 3);
    assertEquals(3, groups.size());
    assertEquals(List.of("big"), groups.get(0).stream().map(TensorSpec::name).toList());
    assertEquals(List.of("a", "b"), groups.get(1).stream().map(TensorSpec::name).toList());
    assertEquals(List.of("c"), groups.get(2).stream().map(TensorSpec::name).toList());

    List<TensorSpec> even = new ArrayList<>();
    for (int i = 0; i < 9; i++) {
      even.add(new TensorSpec("t" + i, DType.F32, new long[] {10}));
    }
    assertEquals(
        List.of(3, 3, 3), SafeTensorsWriter.split(even, 3).stream().map(List::size).toList());
  }

  @Test
  void writerRejectsBadArguments() {
    TensorSpec t = new TensorSpec("t", DType.F32, new long[] {2});
    assertThrows(
        IllegalArgumentException.class,
        () -> SafeTensorsWriter.write(dir, List.of(t, t), 1, FILLER, Map.of()));
    assertThrows(
        IllegalArgumentException.class,
        () -> SafeTensorsWriter.write(dir, List.of(t), 2, FILLER, Map.of()));
    assertThrows(
        IllegalArgumentException.class,
        () -> SafeTensorsWriter.write(dir, List.of(t), 0, FILLER, Map.of()));
    assertThrows(
        IllegalArgumentException.class, () -> new TensorSpec("n", DType.F32, new long[] {2, -1}));
  }

  @Test
  void failingFillerLeavesNoFile() throws IOException {
    TensorSpec t = new TensorSpec("t", DType.F32, new long[] {2});
    assertThrows(
        IllegalStateException.class,
        () ->
            SafeTensorsWriter.write(
                dir,
                List.of(t),
                1,
                (spec, values) -> {
                  throw new IllegalStateException("boom");
                },
                Map.of()));
    try (var s = Files.list(dir)) {
      assertEquals(List.of(), s.toList());
    }
  }

  @Test
  void readsHandMadeUnpaddedFileWithScalarAndEmptyTensor() throws IOException {
    // As another writer might produce: no padding, keys out of offset order, a scalar, a 0-size.
    String header =
        "{\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]},"
            + "\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},"
            + "\"z\":{\"dtype\":\"BF16\",\"shape\":[0,4],\"data_offsets\":[12,12]},"
            + "\"__metadata__\":{\"format\":\"pt\"}}";
    Path f = RawFiles.write(dir.resolve("x.safetensors"), header, RawFiles.f32(7f, 1.5f, -2f));
    try (SafeTensors st = SafeTensors.open(f)) {
      assertEquals(List.of("a", "b", "z"), List.copyOf(st.names()));
      assertArrayEquals(new float[] {7f}, st.floats("a"));
      assertArrayEquals(new float[] {1.5f, -2f}, st.floats("b", 2));
      assertArrayEquals(new float[0], st.floats("z", 0, 4));
      assertEquals(
          -2f,
          st.bytes("b")
              .get(ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), 4));
    }
  }

  @Test
  void directoryWithoutIndexOrModelFileOpensAllSafetensorsFiles() throws IOException {
    RawFiles.write(
        dir.resolve("one.safetensors"),
        "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
        RawFiles.f32(1f));
    RawFiles.write(
        dir.resolve("two.safetensors"),
        "{\"y\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
        RawFiles.f32(2f));
    Files.writeString(dir.resolve("config.json"), "{}");
    try (SafeTensors st = SafeTensors.open(dir)) {
      assertEquals(
          List.of(dir.resolve("one.safetensors"), dir.resolve("two.safetensors")), st.files());
      assertArrayEquals(new float[] {2f}, st.floats("y", 1));
    }
  }

  @Test
  void modelSafetensorsWinsOverOtherFiles() throws IOException {
    SafeTensorsWriter.write(dir, model(DType.F32), 1, FILLER, Map.of());
    RawFiles.write(dir.resolve("stray.safetensors"), "{}", 0);
    try (SafeTensors st = SafeTensors.open(dir)) {
      assertEquals(List.of(dir.resolve("model.safetensors")), st.files());
    }
  }

  @Test
  void singleFileOverShardedDirectoryReplacesStaleIndex() throws IOException {
    SafeTensorsWriter.write(dir, model(DType.F32), 3, FILLER, Map.of());
    List<TensorSpec> one = List.of(new TensorSpec("only", DType.F32, new long[] {2}));
    SafeTensorsWriter.write(dir, one, 1, FILLER, Map.of());
    assertFalse(Files.exists(dir.resolve("model.safetensors.index.json")));
    try (SafeTensors st = SafeTensors.open(dir)) {
      assertEquals(Set.of("only"), st.names());
    }
  }

  @Test
  void closeThenAccessFailsWithIllegalStateException() {
    SafeTensorsWriter.write(dir, model(DType.BF16), 1, FILLER, Map.of());
    SafeTensors st = SafeTensors.open(dir);
    MemorySegment view = st.bytes("model.norm.weight");
    Matrix m = st.matrix("lm_head.weight", 32, 16);
    st.close();
    st.close(); // idempotent
    assertThrows(IllegalStateException.class, () -> view.get(ValueLayout.JAVA_BYTE, 0));
    assertThrows(IllegalStateException.class, () -> m.get(0, 0));
    assertThrows(IllegalStateException.class, () -> st.bytes("model.norm.weight"));
    assertThrows(IllegalStateException.class, () -> st.floats("model.norm.weight", 16));
    assertThrows(IllegalStateException.class, () -> st.info("model.norm.weight"));
    assertThrows(IllegalStateException.class, st::names);
  }

  @Test
  void widenedF16MatrixOutlivesClose() {
    SafeTensorsWriter.write(dir, model(DType.F16), 1, FILLER, Map.of());
    Matrix m;
    try (SafeTensors st = SafeTensors.open(dir)) {
      m = st.matrix("lm_head.weight", 32, 16);
    }
    TensorSpec spec = model(DType.F16).getLast();
    assertEquals(stored(DType.F16, value(spec, 17)), m.get(1, 1));
  }

  static long headerLength(Path file) throws IOException {
    byte[] b = Files.readAllBytes(file);
    return ByteBuffer.wrap(b, 0, 8).order(ByteOrder.LITTLE_ENDIAN).getLong();
  }

  static JsonNode headerJson(Path file) throws IOException {
    byte[] b = Files.readAllBytes(file);
    int n = (int) headerLength(file);
    return new ObjectMapper().readTree(new String(b, 8, n, StandardCharsets.UTF_8));
  }
}

package io.moecluster.core.safetensors;

import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moecluster.core.safetensors.SafeTensorsWriter.TensorSpec;
import io.moecluster.core.tensor.DType;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;
import org.junit.jupiter.api.io.TempDir;

/** Every way a checkpoint can be wrong gives a SafeTensorsException naming file and tensor. */
class SafeTensorsValidationTest {
  @TempDir Path dir;

  private static final String OK_W =
      "\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}";

  /** Asserts a SafeTensorsException whose message contains every one of {@code parts}. */
  private static SafeTensorsException fails(Executable action, Object... parts) {
    SafeTensorsException e = assertThrows(SafeTensorsException.class, action);
    for (Object part : parts) {
      assertTrue(
          e.getMessage().contains(part.toString()),
          "message should mention '" + part + "': " + e.getMessage());
    }
    return e;
  }

  private Path raw(String header, int dataBytes) throws IOException {
    return RawFiles.write(dir.resolve("bad.safetensors"), header, dataBytes);
  }

  private static void open(Path p) {
    SafeTensors.open(p).close();
  }

  // --- file and header framing ---

  @Test
  void emptyFile() throws IOException {
    Path f = Files.write(dir.resolve("empty.safetensors"), new byte[0]);
    fails(() -> open(f), f, "shorter than the 8-byte header length");
  }

  @Test
  void fileShorterThanEightBytes() throws IOException {
    Path f = Files.write(dir.resolve("short.safetensors"), new byte[] {1, 2, 3});
    fails(() -> open(f), f, "3 bytes");
  }

  @Test
  void headerLengthLargerThanFile() throws IOException {
    byte[] h = ("{" + OK_W + "}").getBytes(StandardCharsets.UTF_8);
    Path f = RawFiles.write(dir.resolve("x.safetensors"), 5000, h, new byte[16]);
    fails(() -> open(f), f, "header length 5000", "larger than the file");
  }

  @Test
  void absurdHeaderLength() throws IOException {
    Path f = RawFiles.write(dir.resolve("x.safetensors"), 200_000_000L, new byte[8], new byte[0]);
    fails(() -> open(f), f, "200000000", "absurd");
    Path g = RawFiles.write(dir.resolve("y.safetensors"), -1L, new byte[8], new byte[0]);
    fails(() -> open(g), g, "18446744073709551615", "absurd");
  }

  @Test
  void headerNotJson() throws IOException {
    Path f = raw("{\"w\": {\"dtype\": \"F32\", ", 0);
    fails(() -> open(f), f, "not valid JSON");
    Path g =
        RawFiles.write(
            dir.resolve("bin.safetensors"), 4, new byte[] {(byte) 0xff, 0, 1, 2}, new byte[0]);
    fails(() -> open(g), g, "not valid JSON");
  }

  @Test
  void headerNotAnObject() throws IOException {
    Path f = raw("[1, 2, 3]", 0);
    fails(() -> open(f), f, "not a JSON object", "array");
  }

  @Test
  void duplicateKeysInHeader() throws IOException {
    Path f = raw("{" + OK_W + "," + OK_W + "}", 16);
    fails(() -> open(f), f, "not valid JSON", "w");
  }

  @Test
  void metadataNotStrings() throws IOException {
    Path f = raw("{\"__metadata__\":{\"format\":1}," + OK_W + "}", 16);
    fails(() -> open(f), f, "__metadata__", "format");
  }

  // --- tensor entries ---

  @Test
  void entryMissingField() throws IOException {
    Path f = raw("{\"w\":{\"dtype\":\"F32\",\"shape\":[4]}}", 16);
    fails(() -> open(f), f, "tensor 'w'", "data_offsets");
  }

  @Test
  void entryNotAnObject() throws IOException {
    Path f = raw("{\"w\":[1,2]}", 16);
    fails(() -> open(f), f, "tensor 'w'", "must be an object");
  }

  @Test
  void entryWithWrongJsonTypes() throws IOException {
    Path a = raw("{\"w\":{\"dtype\":\"F32\",\"shape\":\"4\",\"data_offsets\":[0,16]}}", 16);
    fails(() -> open(a), a, "tensor 'w'", "\"shape\" must be an array of integers");
    Path b = raw("{\"w\":{\"dtype\":\"F32\",\"shape\":[4.5],\"data_offsets\":[0,16]}}", 16);
    fails(() -> open(b), b, "tensor 'w'", "\"shape\"");
    Path c = raw("{\"w\":{\"dtype\":32,\"shape\":[4],\"data_offsets\":[0,16]}}", 16);
    fails(() -> open(c), c, "tensor 'w'", "\"dtype\" must be a string");
    Path d = raw("{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,\"16\"]}}", 16);
    fails(() -> open(d), d, "tensor 'w'", "\"data_offsets\"");
    Path e = raw("{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,8,16]}}", 16);
    fails(() -> open(e), e, "tensor 'w'", "[begin, end]");
    Path g =
        raw(
            "{\"w\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,16]}}",
            16);
    fails(() -> open(g), g, "tensor 'w'", "\"shape\"");
  }

  @Test
  void unsupportedDtype() throws IOException {
    for (String dtype : List.of("I8", "U8", "F64", "I64", "float32")) {
      Path f =
          raw("{\"w\":{\"dtype\":\"" + dtype + "\",\"shape\":[4],\"data_offsets\":[0,4]}}", 32);
      fails(() -> open(f), f, "tensor 'w'", "unsupported dtype " + dtype, "F32, BF16, F16");
    }
  }

  @Test
  void beginAfterEnd() throws IOException {
    Path f = raw("{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[16,0]}}", 16);
    fails(() -> open(f), f, "tensor 'w'", "begin > end");
  }

  @Test
  void negativeBegin() throws IOException {
    Path f = raw("{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[-4,0]}}", 16);
    fails(() -> open(f), f, "tensor 'w'", "negative begin");
  }

  @Test
  void truncatedDataSection() throws IOException {
    Path f = raw("{" + OK_W + "}", 10);
    fails(() -> open(f), f, "tensor 'w'", "truncated", "10 bytes");
  }

  @Test
  void byteLengthDisagreesWithShape() throws IOException {
    Path f = raw("{\"w\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", 16);
    fails(() -> open(f), f, "tensor 'w'", "16 bytes", "needs 8");
  }

  @Test
  void shapeOverflow() throws IOException {
    String big = "4611686018427387904"; // 2^62
    Path f =
        raw(
            "{\"w\":{\"dtype\":\"F32\",\"shape\":["
                + big
                + ","
                + big
                + "],\"data_offsets\":[0,16]}}",
            16);
    fails(() -> open(f), f, "tensor 'w'", "overflows");
  }

  @Test
  void negativeDimension() throws IOException {
    Path f = raw("{\"w\":{\"dtype\":\"F32\",\"shape\":[-2,-2],\"data_offsets\":[0,16]}}", 16);
    fails(() -> open(f), f, "tensor 'w'", "negative dimension");
  }

  @Test
  void overlappingTensors() throws IOException {
    Path f =
        raw(
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                + "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
            16);
    fails(() -> open(f), f, "'a'", "'b'", "overlap");
  }

  // --- directories and shards ---

  @Test
  void noSuchPath() {
    Path p = dir.resolve("nope");
    fails(() -> open(p), p, "no such file or directory");
  }

  @Test
  void directoryWithoutSafetensors() throws IOException {
    Files.writeString(dir.resolve("config.json"), "{}");
    fails(() -> open(dir), dir, "no safetensors checkpoint", "model.safetensors.index.json");
  }

  private void threeShards() {
    List<TensorSpec> specs =
        List.of(
            new TensorSpec("a", DType.F32, new long[] {4}),
            new TensorSpec("b", DType.F32, new long[] {4}),
            new TensorSpec("c", DType.F32, new long[] {4}));
    SafeTensorsWriter.write(dir, specs, 3, (s, v) -> {}, Map.of());
  }

  @Test
  void indexWithoutWeightMap() throws IOException {
    threeShards();
    Path index = dir.resolve("model.safetensors.index.json");
    Files.writeString(index, "{\"metadata\":{\"total_size\":48}}");
    fails(() -> open(dir), index, "weight_map");
  }

  @Test
  void indexNotJson() throws IOException {
    threeShards();
    Path index = dir.resolve("model.safetensors.index.json");
    Files.writeString(index, "{\"weight_map\": {");
    fails(() -> open(dir), index, "not valid JSON");
  }

  @Test
  void indexWithNonStringEntry() throws IOException {
    threeShards();
    Path index = dir.resolve("model.safetensors.index.json");
    Files.writeString(index, "{\"weight_map\": {\"a\": 1}}");
    fails(() -> open(dir), index, "tensor 'a'", "file name");
  }

  @Test
  void indexPointsOutsideDirectory() throws IOException {
    threeShards();
    Path index = dir.resolve("model.safetensors.index.json");
    Files.writeString(index, "{\"weight_map\": {\"a\": \"../model-00001-of-00003.safetensors\"}}");
    fails(() -> open(dir), index, "tensor 'a'", "outside");
  }

  @Test
  void missingShard() throws IOException {
    threeShards();
    Path shard = dir.resolve("model-00002-of-00003.safetensors");
    Files.delete(shard);
    fails(() -> open(dir), shard, "tensor 'b'", "missing");
  }

  @Test
  void tensorListedInIndexButAbsentFromShard() throws IOException {
    threeShards();
    Path index = dir.resolve("model.safetensors.index.json");
    String json = Files.readString(index);
    Files.writeString(index, json.replace("\"c\" : \"model-00003", "\"d\" : \"model-00003"));
    fails(
        () -> open(dir),
        index,
        "tensor 'd'",
        "model-00003-of-00003.safetensors",
        "does not contain");
  }

  @Test
  void tensorInIndexUnderTheWrongShard() throws IOException {
    threeShards();
    Path index = dir.resolve("model.safetensors.index.json");
    String json = Files.readString(index);
    Files.writeString(index, json.replace("\"c\" : \"model-00003", "\"c\" : \"model-00001"));
    fails(
        () -> open(dir),
        index,
        "tensor 'c'",
        "model-00001-of-00003.safetensors",
        "does not contain");
  }

  @Test
  void sameTensorInTwoFiles() throws IOException {
    Path one = RawFiles.write(dir.resolve("one.safetensors"), "{" + OK_W + "}", 16);
    Path two = RawFiles.write(dir.resolve("two.safetensors"), "{" + OK_W + "}", 16);
    fails(() -> open(dir), "tensor 'w'", one, two);
  }

  @Test
  void corruptShardNamesTheShard() throws IOException {
    threeShards();
    Path shard = dir.resolve("model-00003-of-00003.safetensors");
    byte[] b = Files.readAllBytes(shard);
    Files.write(shard, Arrays.copyOf(b, b.length - 4));
    fails(() -> open(dir), shard, "tensor 'c'", "truncated");
  }

  // --- lookups ---

  private SafeTensors small() throws IOException {
    String header =
        "{"
            + OK_W
            + ",\"v\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[16,24]},"
            + "\"t\":{\"dtype\":\"F16\",\"shape\":[1,2,2],\"data_offsets\":[24,32]}}";
    return SafeTensors.open(raw(header, 32));
  }

  @Test
  void missingTensor() throws IOException {
    try (SafeTensors st = small()) {
      fails(
          () -> st.info("model.x"),
          "tensor 'model.x' not found in",
          dir.resolve("bad.safetensors"),
          "3 tensors; e.g. ");
      fails(() -> st.bytes("model.x"), "tensor 'model.x'");
      fails(() -> st.matrix("model.x", 1, 1), "tensor 'model.x'");
      fails(() -> st.floats("model.x", 1), "tensor 'model.x'");
    }
  }

  @Test
  void missingTensorInEmptyCheckpoint() throws IOException {
    Path f = raw("{\"__metadata__\":{}}", 0);
    try (SafeTensors st = SafeTensors.open(f)) {
      fails(() -> st.info("x"), "tensor 'x' not found", f, "0 tensors; e.g. none");
    }
  }

  @Test
  void missingTensorSuggestsSimilarNames() throws IOException {
    try (SafeTensors st = small()) {
      fails(() -> st.info("vv"), "e.g. v, ");
    }
  }

  @Test
  void wrongShapeInMatrix() throws IOException {
    try (SafeTensors st = small()) {
      fails(
          () -> st.matrix("w", 4, 1),
          dir.resolve("bad.safetensors"),
          "tensor 'w'",
          "has shape [2, 2]",
          "expected [4, 1]");
    }
  }

  @Test
  void wrongRankInMatrix() throws IOException {
    try (SafeTensors st = small()) {
      fails(() -> st.matrix("v", 4, 1), "tensor 'v'", "rank 1", "[4]", "expected a matrix [4, 1]");
      fails(() -> st.matrix("t", 2, 2), "tensor 't'", "rank 3", "[1, 2, 2]");
    }
  }

  @Test
  void wrongShapeInFloats() throws IOException {
    try (SafeTensors st = small()) {
      fails(
          () -> st.floats("w", 2, 3),
          dir.resolve("bad.safetensors"),
          "tensor 'w'",
          "has shape [2, 2]",
          "expected [2, 3]");
      fails(() -> st.floats("w", 4), "tensor 'w'", "expected [4]", "rank 2, expected rank 1");
    }
  }
}

package io.moecluster.core.checkpoint;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moecluster.core.config.ModelConfig;
import io.moecluster.core.config.ModelFamily;
import io.moecluster.core.safetensors.SafeTensors;
import io.moecluster.core.tensor.DType;
import io.moecluster.core.tokenizer.Tokenizer;
import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class CheckpointWriterTest {

  private static Path llama2Tokenizer() throws URISyntaxException {
    return Path.of(
        CheckpointWriterTest.class.getResource("/io/moecluster/core/tokenizer/llama2/tokenizer.json").toURI())
        .getParent();
  }

  @Test
  void sameSeedSameBytes(@TempDir Path dir) throws Exception {
    CheckpointWriter.write(CheckpointSpec.of(Preset.TINY, DType.BF16, 9), dir.resolve("a"));
    CheckpointWriter.write(CheckpointSpec.of(Preset.TINY, DType.BF16, 9), dir.resolve("b"));
    CheckpointWriter.write(CheckpointSpec.of(Preset.TINY, DType.BF16, 10), dir.resolve("c"));
    byte[] a = Files.readAllBytes(dir.resolve("a/model.safetensors"));
    assertArrayEquals(a, Files.readAllBytes(dir.resolve("b/model.safetensors")));
    assertTrue(!java.util.Arrays.equals(a, Files.readAllBytes(dir.resolve("c/model.safetensors"))));
    assertEquals(Files.readString(dir.resolve("a/tokenizer.json")), Files.readString(dir.resolve("b/tokenizer.json")));
  }

  @Test
  void writesTheHuggingFaceLayout(@TempDir Path dir) {
    ModelConfig c = CheckpointWriter.write(CheckpointSpec.of(Preset.SMALL, DType.F32, 1), dir);
    assertEquals(c, ModelConfig.load(dir));
    assertEquals(512, c.hiddenSize());
    assertEquals(8, c.numExperts());
    try (SafeTensors st = SafeTensors.open(dir)) {
      var w1 = st.info("model.layers.3.block_sparse_moe.experts.7.w1.weight");
      assertArrayEquals(new long[] {1408, 512}, w1.shape());
      var w2 = st.info("model.layers.3.block_sparse_moe.experts.7.w2.weight");
      assertArrayEquals(new long[] {512, 1408}, w2.shape());
      assertArrayEquals(new long[] {128, 512}, st.info("model.layers.0.self_attn.k_proj.weight").shape());
      assertArrayEquals(new long[] {c.vocabSize(), 512}, st.info("lm_head.weight").shape());
    }
  }

  @Test
  void everyFamilyLoadsBack(@TempDir Path dir) {
    for (ModelFamily family : ModelFamily.values()) {
      Path out = dir.resolve(family.modelType());
      ModelConfig c =
          CheckpointWriter.write(new CheckpointSpec(Preset.TINY, family, DType.F32, 1, 1, null), out);
      assertEquals(family, ModelConfig.load(out).family());
      assertEquals(c, ModelConfig.load(out));
    }
  }

  @Test
  void copiedTokenizerSetsTheVocabulary(@TempDir Path dir) throws Exception {
    ModelConfig c =
        CheckpointWriter.write(
            new CheckpointSpec(Preset.TINY, ModelFamily.MIXTRAL, DType.BF16, 1, 1, llama2Tokenizer()), dir);
    assertEquals(32000, c.vocabSize());
    assertEquals(1, c.bosTokenId());
    assertEquals(32000, Tokenizer.load(dir).vocabSize());
    assertArrayEquals(new int[] {1, 15043, 3186}, Tokenizer.load(dir).encode("Hello world"));
  }

  @Test
  void badSpecsAreRefused(@TempDir Path dir) {
    assertThrows(IllegalArgumentException.class, () -> CheckpointSpec.of(Preset.TINY, DType.F16, 1));
    assertThrows(
        IllegalArgumentException.class,
        () -> new CheckpointSpec(Preset.TINY, ModelFamily.MIXTRAL, DType.F32, 1, 0, null));
    var e =
        assertThrows(
            IllegalArgumentException.class,
            () -> CheckpointWriter.write(
                new CheckpointSpec(Preset.TINY, ModelFamily.MIXTRAL, DType.F32, 1, 1, dir.resolve("none")),
                dir.resolve("out")));
    assertTrue(e.getMessage().contains("tokenizer.json"), e.getMessage());
  }

  @Test
  void aRefusedSpecLeavesTheCheckpointThereAsItWas(@TempDir Path dir) throws Exception {
    CheckpointWriter.write(CheckpointSpec.of(Preset.TINY, DType.BF16, 3), dir);
    byte[] config = Files.readAllBytes(dir.resolve("config.json"));
    byte[] weights = Files.readAllBytes(dir.resolve("model.safetensors"));
    byte[] tokenizer = Files.readAllBytes(dir.resolve("tokenizer.json"));
    // More shards than tensors is refused only after the tokenizer and config are made.
    assertThrows(IllegalArgumentException.class,
        () -> CheckpointWriter.write(new CheckpointSpec(Preset.SMALL, ModelFamily.MIXTRAL, DType.F32, 1, 1000, null), dir));
    assertArrayEquals(config, Files.readAllBytes(dir.resolve("config.json")));
    assertArrayEquals(weights, Files.readAllBytes(dir.resolve("model.safetensors")));
    assertArrayEquals(tokenizer, Files.readAllBytes(dir.resolve("tokenizer.json")));
    assertEquals(List.of("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"), names(dir));
  }

  @Test
  void aRewriteReplacesTheOtherLayoutsWeights(@TempDir Path dir) {
    CheckpointWriter.write(new CheckpointSpec(Preset.TINY, ModelFamily.MIXTRAL, DType.F32, 1, 3, null), dir);
    assertTrue(Files.isRegularFile(dir.resolve("model.safetensors.index.json")));
    ModelConfig single = CheckpointWriter.write(CheckpointSpec.of(Preset.TINY, DType.BF16, 2), dir);
    assertEquals(List.of("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"), names(dir));
    assertEquals(single, ModelConfig.load(dir));
    CheckpointWriter.write(new CheckpointSpec(Preset.TINY, ModelFamily.MIXTRAL, DType.F32, 1, 2, null), dir);
    assertEquals(List.of("config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
        "model.safetensors.index.json", "tokenizer.json", "tokenizer_config.json"), names(dir));
    try (SafeTensors st = SafeTensors.open(dir)) {
      assertEquals(DType.F32, st.info("lm_head.weight").dtype());
    }
  }

  @Test
  void theStagingOfAWriterThatDiedIsRemovedAndALiveOnesIsKept(@TempDir Path dir) throws Exception {
    Process gone = new ProcessBuilder("true").start();
    gone.waitFor();
    Path abandoned = Files.createDirectories(dir.resolve(".moe-partial-" + gone.pid() + "-1/sub"));
    Files.writeString(abandoned.resolve("model.safetensors"), "half");
    Path live = Files.createDirectories(dir.resolve(".moe-partial-" + ProcessHandle.current().pid() + "-7"));
    CheckpointWriter.write(CheckpointSpec.of(Preset.TINY, DType.BF16, 1), dir);
    assertTrue(Files.notExists(abandoned.getParent()));
    assertTrue(Files.isDirectory(live));
    ModelConfig.load(dir);
  }

  private static List<String> names(Path dir) {
    try (var s = Files.list(dir)) {
      return s.map(p -> p.getFileName().toString()).sorted().toList();
    } catch (java.io.IOException e) {
      throw new java.io.UncheckedIOException(e);
    }
  }
}

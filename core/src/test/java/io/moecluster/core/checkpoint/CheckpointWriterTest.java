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
}

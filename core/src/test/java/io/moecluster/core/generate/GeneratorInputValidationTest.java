package io.moecluster.core.generate;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moecluster.core.checkpoint.Preset;
import io.moecluster.core.config.ModelFamily;
import io.moecluster.core.model.ForwardHarness;
import io.moecluster.core.model.NaiveMoeReference;
import io.moecluster.core.model.TestCheckpoints;
import io.moecluster.core.sampling.SamplingParams;
import io.moecluster.core.tensor.DType;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Prompts the generator must refuse, and the context limit. */
class GeneratorInputValidationTest {

  private static Path tiny() {
    return TestCheckpoints.get(Preset.TINY, ModelFamily.MIXTRAL, DType.F32);
  }

  private static GenerationRequest greedy(int[] prompt, int maxTokens) {
    return new GenerationRequest(prompt, SamplingParams.GREEDY, maxTokens, List.of(), true);
  }

  @Test
  void promptTokenOutsideVocabularyIsRejectedNamingTheId() {
    try (LocalGenerator gen = LocalGenerator.open(tiny(), 2)) {
      int vocab = gen.config().vocabSize();
      for (int bad : new int[] {vocab, vocab + 77, -3}) {
        IllegalArgumentException e =
            assertThrows(IllegalArgumentException.class, () -> gen.generate(greedy(new int[] {1, bad, 2}, 3), t -> {}));
        assertTrue(e.getMessage().contains(String.valueOf(bad)), e.getMessage());
        IllegalArgumentException inBatch =
            assertThrows(
                IllegalArgumentException.class,
                () -> gen.generateBatch(List.of(greedy(new int[] {4, 5}, 2), greedy(new int[] {bad}, 2))));
        assertTrue(inBatch.getMessage().contains(String.valueOf(bad)), inBatch.getMessage());
      }
      // The generator is still usable afterwards.
      assertEquals(2, gen.generate(greedy(new int[] {4, 5}, 2), t -> {}).generatedIds().length);
    }
  }

  @Test
  void promptLongerThanTheContextIsRejected(@TempDir Path tmp) {
    Path dir = TestCheckpoints.copyWithTensors(tiny(), tmp.resolve("ckpt"), ts -> {});
    TestCheckpoints.editConfig(dir, c -> c.put("max_position_embeddings", 16));
    try (LocalGenerator gen = LocalGenerator.open(dir, 2)) {
      int vocab = gen.config().vocabSize();
      for (int length : new int[] {16, 17, 40}) {
        int[] prompt = ForwardHarness.prompt(3L, length, vocab);
        IllegalArgumentException e =
            assertThrows(IllegalArgumentException.class, () -> gen.generate(greedy(prompt, 4), t -> {}));
        assertTrue(e.getMessage().contains("16"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> gen.generateBatch(List.of(greedy(prompt, 4))));
      }
    }
  }

  /**
   * max_tokens is capped by the context: a 10-token prompt in a 16-token context yields 6 tokens
   * and stops with LENGTH, and they still equal the reference's greedy continuation.
   */
  @Test
  void generationStopsAtTheContextLength(@TempDir Path tmp) {
    Path dir = TestCheckpoints.copyWithTensors(tiny(), tmp.resolve("ckpt"), ts -> {});
    TestCheckpoints.editConfig(dir, c -> c.put("max_position_embeddings", 16));
    int[] prompt;
    int[] expected;
    try (NaiveMoeReference ref = NaiveMoeReference.load(dir)) {
      prompt = ForwardHarness.prompt(4L, 10, ref.vocabSize());
      expected = ref.greedy(prompt, 6);
    }
    try (LocalGenerator gen = LocalGenerator.open(dir, 2)) {
      GenerationResult r = gen.generate(greedy(prompt, 100), t -> {});
      assertEquals(FinishReason.LENGTH, r.finishReason());
      assertArrayEquals(expected, r.generatedIds());
      // A prompt one short of the context still gets its one token.
      GenerationResult one = gen.generate(greedy(ForwardHarness.prompt(5L, 15, gen.config().vocabSize()), 100), t -> {});
      assertEquals(1, one.generatedIds().length);
      assertEquals(FinishReason.LENGTH, one.finishReason());
    }
  }
}

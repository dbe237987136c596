package io.moecluster.core.generate;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moecluster.core.checkpoint.Preset;
import io.moecluster.core.config.ModelFamily;
import io.moecluster.core.model.ForwardHarness;
import io.moecluster.core.model.NaiveMoeReference;
import io.moecluster.core.model.TestCheckpoints;
import io.moecluster.core.sampling.SamplingParams;
import io.moecluster.core.tensor.DType;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * LocalGenerator's greedy tokens (prefill, then 11 decode steps through the KV cache, on the
 * Vector API kernels with 2 threads) equal the reference's greedy continuation, which recomputes
 * the whole sequence from scratch at every step.
 */
class GreedyGenerationReferenceTest {
  static final int STEPS = 12;

  static Stream<Arguments> cases() {
    return Stream.of(
        Arguments.of(Preset.TINY, ModelFamily.MIXTRAL, DType.F32, 6),
        Arguments.of(Preset.TINY, ModelFamily.MIXTRAL, DType.BF16, 1),
        Arguments.of(Preset.TINY, ModelFamily.QWEN2_MOE, DType.F32, 5),
        Arguments.of(Preset.TINY, ModelFamily.QWEN3_MOE, DType.F32, 5),
        Arguments.of(Preset.TINY, ModelFamily.OLMOE, DType.F32, 5),
        Arguments.of(Preset.SMALL, ModelFamily.MIXTRAL, DType.F32, 4));
  }

  @ParameterizedTest(name = "{0} {1} {2}, prompt of {3}")
  @MethodSource("cases")
  void greedyTokensEqualReference(Preset preset, ModelFamily family, DType dtype, int promptLength) {
    Path dir = TestCheckpoints.get(preset, family, dtype);
    int[] expected;
    int[] prompt;
    try (NaiveMoeReference ref = NaiveMoeReference.load(dir)) {
      prompt = ForwardHarness.prompt(99L + promptLength, promptLength, ref.vocabSize());
      expected = ref.greedy(prompt, STEPS);
    }
    try (LocalGenerator gen = LocalGenerator.open(dir, 2)) {
      List<TokenEvent> events = new ArrayList<>();
      GenerationResult result =
          gen.generate(new GenerationRequest(prompt, SamplingParams.GREEDY, STEPS, List.of(), true), events::add);
      System.out.println(
          "[reference] greedy " + preset + " " + family + " " + dtype + ": " + Arrays.toString(result.generatedIds()));
      assertArrayEquals(expected, result.generatedIds(), "greedy continuation of " + Arrays.toString(prompt));
      assertEquals(FinishReason.LENGTH, result.finishReason());
      assertArrayEquals(prompt, result.promptIds());
      assertEquals(STEPS, events.size());
      for (int i = 0; i < STEPS; i++) {
        assertEquals(i, events.get(i).index());
        assertEquals(expected[i], events.get(i).tokenId());
      }
      assertEquals(
          result.text(), events.stream().map(TokenEvent::textDelta).reduce("", String::concat),
          "streamed deltas add up to the text");
    }
  }

  /**
   * An EOS id taken from the greedy continuation (config eos_token_id edited): generation stops
   * right after emitting it (EOS included, as in HF), ignore_eos runs on, and a batch mixing both
   * gives each the same tokens as alone.
   */
  @Test
  void eosStopsGreedyGeneration(@TempDir Path tmp) {
    Path src = TestCheckpoints.get(Preset.TINY, ModelFamily.MIXTRAL, DType.F32);
    int[] prompt;
    int[] expected;
    try (NaiveMoeReference ref = NaiveMoeReference.load(src)) {
      prompt = ForwardHarness.prompt(123L, 5, ref.vocabSize());
      expected = ref.greedy(prompt, STEPS);
    }
    int stop = -1;
    for (int i = 2; i < STEPS && stop < 0; i++) {
      final int at = i;
      if (Arrays.stream(expected, 0, i).noneMatch(t -> t == expected[at])) {
        stop = i;
      }
    }
    assertTrue(stop > 0, "no fresh token in " + Arrays.toString(expected));
    int eos = expected[stop];
    Path dir = TestCheckpoints.copyWithConfig(src, tmp.resolve("eos"), c -> c.put("eos_token_id", eos));
    try (LocalGenerator gen = LocalGenerator.open(dir, 2)) {
      assertTrue(gen.eosTokenIds().contains(eos));
      GenerationRequest stopping = new GenerationRequest(prompt, SamplingParams.GREEDY, STEPS, List.of(), false);
      GenerationRequest ignoring = new GenerationRequest(prompt, SamplingParams.GREEDY, STEPS, List.of(), true);
      GenerationResult a = gen.generate(stopping, e -> {});
      assertEquals(FinishReason.EOS, a.finishReason());
      assertArrayEquals(Arrays.copyOf(expected, stop + 1), a.generatedIds());
      GenerationResult b = gen.generate(ignoring, e -> {});
      assertEquals(FinishReason.LENGTH, b.finishReason());
      assertArrayEquals(expected, b.generatedIds());
      GenerationRequest other =
          new GenerationRequest(
              ForwardHarness.prompt(124L, 3, gen.config().vocabSize()), SamplingParams.GREEDY, STEPS, List.of(), true);
      GenerationResult c = gen.generate(other, e -> {});
      List<GenerationResult> batch = gen.generateBatch(List.of(stopping, other, ignoring));
      assertArrayEquals(a.generatedIds(), batch.get(0).generatedIds());
      assertEquals(FinishReason.EOS, batch.get(0).finishReason());
      assertArrayEquals(c.generatedIds(), batch.get(1).generatedIds());
      assertArrayEquals(b.generatedIds(), batch.get(2).generatedIds());
    }
  }
}

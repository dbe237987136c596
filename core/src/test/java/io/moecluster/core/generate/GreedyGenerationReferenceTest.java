package io.moecluster.core.generate;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

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
}

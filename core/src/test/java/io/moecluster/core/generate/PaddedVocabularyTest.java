package io.moecluster.core.generate;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moecluster.core.checkpoint.Preset;
import io.moecluster.core.config.ModelFamily;
import io.moecluster.core.model.ForwardHarness;
import io.moecluster.core.model.KvCache;
import io.moecluster.core.model.NaiveMoeReference;
import io.moecluster.core.model.TestCheckpoints;
import io.moecluster.core.model.TestCheckpoints.RawTensor;
import io.moecluster.core.sampling.SamplingParams;
import io.moecluster.core.tensor.DType;
import io.moecluster.core.tokenizer.Tokenizer;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Real checkpoints pad the embedding past the tokenizer (OLMoE: vocab_size 50304, tokenizer 50280;
 * Qwen2/3-MoE: 151936 vs 151665), and {@link LocalGenerator#open} accepts that. A padding id can
 * still be sampled (its logit is finite); generation must go on, with no text for that id, as in
 * Hugging Face, whose decode skips ids that have no token.
 *
 * <p>Fails today: {@code Sequence.accept} hands every sampled id to {@code
 * StreamingDecoder.push}, which throws {@code TokenizerException} ("Token id N is not in the
 * vocabulary") for an id the tokenizer does not have, killing the whole generation (and, in a
 * batch, every sequence stepped with it).
 */
class PaddedVocabularyTest {
  private static final int PAD = 8;

  /** Sequence-level: logits whose argmax is a padding id. */
  @Test
  void sequenceAcceptsAPaddingId() {
    Path dir = TestCheckpoints.get(Preset.TINY, ModelFamily.MIXTRAL, DType.F32);
    Tokenizer tokenizer = Tokenizer.load(dir);
    int tokVocab = tokenizer.vocabSize();
    GenerationRequest request = new GenerationRequest(new int[] {5, 6}, SamplingParams.GREEDY, 3, List.of(), true);
    List<TokenEvent> events = new ArrayList<>();
    Sequence s = new Sequence(request, new KvCache(1, 8, 64, 4), tokenizer, Set.of(), events::add);
    float[] logits = new float[tokVocab + PAD];
    logits[tokVocab + 3] = 10f; // a padding id wins
    s.accept(logits);
    assertEquals(1, events.size());
    assertEquals(tokVocab + 3, events.getFirst().tokenId());
    assertEquals("", events.getFirst().textDelta());
  }

  /**
   * End to end: a tiny checkpoint whose vocab_size is the tokenizer's + 8, with padding rows of
   * lm_head that win the first greedy step; the generator's tokens must equal the reference's.
   */
  @Test
  void generationThroughAPaddingIdMatchesReference(@TempDir Path tmp) {
    Path src = TestCheckpoints.get(Preset.TINY, ModelFamily.MIXTRAL, DType.F32);
    int vocab;
    int[] prompt;
    int first;
    try (NaiveMoeReference ref = NaiveMoeReference.load(src)) {
      vocab = ref.vocabSize();
      prompt = ForwardHarness.prompt(77L, 6, vocab);
      double[][] logits = ref.logits(prompt);
      first = NaiveMoeReference.argmax(logits[logits.length - 1]);
      assertTrue(logits[logits.length - 1][first] > 0.5, "the winning logit must be positive for the trick");
    }
    int hidden = Preset.TINY.hiddenSize;
    int v = vocab;
    int f = first;
    Path dir =
        TestCheckpoints.copyWithTensors(
            src,
            tmp.resolve("padded"),
            ts ->
                ts.replaceAll(
                    t ->
                        switch (t.name()) {
                          // padding embeddings: copies of rows 1..8
                          case "model.embed_tokens.weight" -> extend(t, v, hidden, j -> 1 + j, j -> 1f);
                          // padding lm_head rows: (3 + j/10) x the row of the winning token
                          case "lm_head.weight" -> extend(t, v, hidden, j -> f, j -> 3f + j / 10f);
                          default -> t;
                        }));
    TestCheckpoints.editConfig(dir, c -> c.put("vocab_size", v + PAD));
    int[] expected;
    try (NaiveMoeReference ref = NaiveMoeReference.load(dir)) {
      expected = ref.greedy(prompt, 6);
    }
    assertEquals(v + PAD - 1, expected[0], "the reference picks the last padding id first");
    try (LocalGenerator gen = LocalGenerator.open(dir, 2)) {
      GenerationResult r =
          gen.generate(new GenerationRequest(prompt, SamplingParams.GREEDY, 6, List.of(), true), e -> {});
      assertArrayEquals(expected, r.generatedIds());
    }
  }

  private static RawTensor extend(
      RawTensor t, int rows, int cols, java.util.function.IntUnaryOperator source, java.util.function.IntFunction<Float> scale) {
    ByteBuffer in = ByteBuffer.wrap(t.data()).order(ByteOrder.LITTLE_ENDIAN);
    ByteBuffer out = ByteBuffer.allocate((rows + PAD) * cols * 4).order(ByteOrder.LITTLE_ENDIAN);
    out.put(t.data());
    for (int j = 0; j < PAD; j++) {
      int src = source.applyAsInt(j);
      float s = scale.apply(j);
      for (int c = 0; c < cols; c++) {
        out.putFloat(s * in.getFloat((src * cols + c) * 4));
      }
    }
    return new RawTensor(t.name(), t.dtype(), new long[] {rows + PAD, cols}, out.array());
  }
}

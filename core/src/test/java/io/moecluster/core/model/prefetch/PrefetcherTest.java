package io.moecluster.core.model.prefetch;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moecluster.core.checkpoint.Preset;
import io.moecluster.core.config.ModelConfig;
import io.moecluster.core.config.ModelFamily;
import io.moecluster.core.generate.BatchStepper;
import io.moecluster.core.generate.GenerationRequest;
import io.moecluster.core.generate.GenerationResult;
import io.moecluster.core.generate.LocalGenerator;
import io.moecluster.core.generate.Sequence;
import io.moecluster.core.model.DenseWeights;
import io.moecluster.core.model.ExpertExecutor;
import io.moecluster.core.model.ExpertTask;
import io.moecluster.core.model.ForwardPass;
import io.moecluster.core.model.Gate;
import io.moecluster.core.model.LayerWeights;
import io.moecluster.core.model.MoeModel;
import io.moecluster.core.model.Routing;
import io.moecluster.core.model.TestCheckpoints;
import io.moecluster.core.sampling.SamplingParams;
import io.moecluster.core.tensor.DType;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Gate-lookahead prefetching: hints go out before a layer's experts run, never change a token,
 * and their accuracy is measured against the real routing.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class PrefetcherTest {

  /** Runs the experts of a delegate and records every call in order. */
  static class RecordingExperts implements ExpertExecutor {
    final ExpertExecutor delegate;
    final List<String> calls = new CopyOnWriteArrayList<>();

    RecordingExperts(ExpertExecutor delegate) {
      this.delegate = delegate;
    }

    @Override
    public List<float[]> run(int layer, List<ExpertTask> tasks) {
      calls.add("run " + layer);
      return delegate.run(layer, tasks);
    }

    @Override
    public void prefetch(int layer, int[] experts) {
      assertTrue(experts.length > 0);
      calls.add("prefetch " + layer);
    }
  }

  /** Collects the listener's reports. */
  static final class Collecting implements PrefetchListener {
    final List<int[]> hints = new ArrayList<>(); // {source, target, count}
    final List<PredictionAccuracy> accuracies = new ArrayList<>();

    @Override
    public void onHints(int sourceLayer, int targetLayer, int[] experts) {
      hints.add(new int[] {sourceLayer, targetLayer, experts.length});
    }

    @Override
    public void onAccuracy(PredictionAccuracy accuracy) {
      accuracies.add(accuracy);
    }
  }

  private static List<GenerationRequest> requests(int vocab) {
    Random random = new Random(11);
    List<GenerationRequest> list = new ArrayList<>();
    for (int i = 0; i < 4; i++) {
      int[] prompt = new int[1 + 4 * i];
      for (int p = 0; p < prompt.length; p++) {
        prompt[p] = random.nextInt(vocab);
      }
      SamplingParams sampling = i % 2 == 0 ? SamplingParams.GREEDY : new SamplingParams(0.9f, 20, 0.95f, 0f, 1.1f, 77L + i);
      list.add(new GenerationRequest(prompt, sampling, 6 + i, List.of(), true));
    }
    return list;
  }

  /** Generates the requests together through a forward pass with the given prefetcher. */
  private static List<GenerationResult> generate(LocalGenerator gen, ExpertExecutor experts, Prefetcher prefetcher,
      List<GenerationRequest> requests) {
    BatchStepper stepper = new BatchStepper(new ForwardPass(gen.model(), experts, prefetcher));
    List<Sequence> all = new ArrayList<>();
    for (GenerationRequest r : requests) {
      int len = r.promptIds().length;
      all.add(new Sequence(r, gen.model().newKvCache(len + r.maxTokens()), gen.tokenizer(), gen.eosTokenIds(), e -> {}));
    }
    List<Sequence> running = new ArrayList<>(all);
    while (!running.isEmpty()) {
      stepper.step(running);
      running.removeIf(Sequence::isFinished);
    }
    return all.stream().map(Sequence::result).toList();
  }

  @Test
  void sameTokensWithAndWithoutPrefetchAndHintsComeFirst() {
    Path dir = TestCheckpoints.get(Preset.TINY, ModelFamily.MIXTRAL, DType.BF16);
    try (LocalGenerator gen = LocalGenerator.open(dir, 1)) {
      List<GenerationRequest> requests = requests(gen.tokenizer().vocabSize());
      List<GenerationResult> reference = gen.generateBatch(requests);
      int layers = gen.config().numLayers();
      for (int depth = 1; depth <= layers; depth++) {
        RecordingExperts recording = new RecordingExperts(gen.model().experts());
        Collecting listener = new Collecting();
        Prefetcher prefetcher = new Prefetcher(gen.model(), depth, listener);
        List<GenerationResult> actual = generate(gen, recording, prefetcher, requests);
        for (int i = 0; i < requests.size(); i++) {
          assertArrayEquals(reference.get(i).generatedIds(), actual.get(i).generatedIds(), "depth " + depth + " req " + i);
        }
        assertOrder(recording.calls, layers, depth);
        assertFalse(listener.accuracies.isEmpty());
        for (PredictionAccuracy a : listener.accuracies) {
          assertTrue(a.share() >= 0 && a.share() <= 1, a.toString());
          assertTrue(a.depth() >= 1 && a.depth() <= depth && a.layer() >= a.depth(), a.toString());
          assertEquals(0, a.routed() % gen.config().topK());
          assertTrue(a.usefulExperts() <= Math.min(a.routedExperts(), a.prefetchedExperts()));
        }
        for (int l = 1; l < layers; l++) {
          double acc = prefetcher.accuracy(l);
          assertTrue(acc >= 0 && acc <= 1, "layer " + l + ": " + acc);
          assertTrue(prefetcher.hintsIssued(l) > 0);
        }
        assertTrue(Double.isNaN(prefetcher.accuracy(0)), "layer 0 is never predicted");
      }
    }
  }

  /**
   * Per step: before "run L", every layer L+1..L+depth (within the model) got its hints at this
   * layer, i.e. after "run L-1".
   */
  private static void assertOrder(List<String> calls, int layers, int depth) {
    int steps = (int) calls.stream().filter(c -> c.equals("run 0")).count();
    assertTrue(steps > 0);
    int i = 0;
    for (int s = 0; s < steps; s++) {
      for (int l = 0; l < layers; l++) {
        for (int t = l + 1; t <= Math.min(layers - 1, l + depth); t++) {
          assertEquals("prefetch " + t, calls.get(i++), "step " + s + " layer " + l + ": " + calls);
        }
        assertEquals("run " + l, calls.get(i++), "step " + s + ": " + calls);
      }
    }
    assertEquals(calls.size(), i);
  }

  @Test
  void sameGateAndSameInputPredictPerfectly() {
    Path dir = TestCheckpoints.get(Preset.SMALL, ModelFamily.MIXTRAL, DType.BF16);
    try (LocalGenerator gen = LocalGenerator.open(dir, 1)) {
      MoeModel model = gen.model();
      ModelConfig c = model.config();
      DenseWeights real = model.dense();
      // Layer 1's gate is layer 0's: with no change of the hidden rows the guess is the routing.
      List<LayerWeights> layers = new ArrayList<>(real.layers());
      LayerWeights l1 = layers.get(1);
      layers.set(1, new LayerWeights(l1.attentionNorm(), l1.attention(), l1.ffnNorm(), layers.get(0).router(),
          l1.sharedExpert(), l1.sharedExpertGate()));
      DenseWeights tied = new DenseWeights(real.embedTokens(), layers, real.finalNorm(), real.lmHead());
      Collecting listener = new Collecting();
      Prefetcher prefetcher = new Prefetcher(c, model.kernels(), tied, 1, 0, listener);
      int rows = 9;
      int hidden = c.hiddenSize();
      Random random = new Random(5);
      float[] xb = new float[rows * hidden];
      for (int i = 0; i < xb.length; i++) {
        xb[i] = (float) random.nextGaussian();
      }
      RecordingExperts recording = new RecordingExperts(model.experts());
      Prefetcher.Step step = prefetcher.newStep(rows);
      step.hint(0, xb, recording);
      assertEquals(List.of("prefetch 1"), recording.calls);
      float[] logits = new float[rows * c.numExperts()];
      model.kernels().matMul(real.layers().get(0).router(), xb, rows, logits);
      Routing routing = Gate.route(model.kernels(), c, logits, rows);
      step.routed(1, routing);
      assertEquals(1.0, prefetcher.accuracy(1));
      PredictionAccuracy a = listener.accuracies.get(0);
      assertEquals(rows * c.topK(), a.routed());
      assertEquals(a.routed(), a.predicted());
      assertEquals(a.routedExperts(), a.usefulExperts());
      assertEquals(a.prefetchedExperts(), a.usefulExperts());
      assertEquals(1, listener.hints.size());
      assertEquals(a.prefetchedExperts(), listener.hints.get(0)[2]);
    }
  }

  @Test
  void scoreCountsRowChoicesAndDistinctExperts() {
    // 2 rows, top-2: real {0,1} {2,3}; guess {1,0} {2,5}: 3 of 4 choices predicted.
    Routing real = new Routing(2, 2, new int[] {0, 1, 2, 3}, new float[4]);
    Routing guess = new Routing(2, 2, new int[] {1, 0, 2, 5}, new float[4]);
    PredictionAccuracy a = Prefetcher.score(3, 1, guess, real);
    assertEquals(new PredictionAccuracy(3, 1, 4, 3, 4, 4, 3), a);
    assertEquals(0.75, a.share());
    assertArrayEquals(new int[] {0, 1, 2, 5}, Prefetcher.distinct(guess));
  }

  @Test
  void extraExpertsAreEachRowsNextBestByScore() {
    // 2 rows of 5 experts: row 0 ranks 3 > 1 > 4 > 0 > 2, row 1 ranks 0 > 2 > 1 > 3 > 4.
    float[] logits = {
      0.1f, 0.8f, -1f, 2.5f, 0.3f,
      3f, 1f, 2f, -0.5f, -2f,
    };
    assertArrayEquals(new int[] {0, 1, 2, 3}, Prefetcher.topByScore(logits, 2, 2));
    assertArrayEquals(new int[] {0, 1, 2, 3, 4}, Prefetcher.topByScore(logits, 2, 3));
    assertArrayEquals(new int[] {0, 1, 2, 3, 4}, Prefetcher.topByScore(logits, 2, 9), "at most every expert");
  }

  @Test
  void extraExpertsWidenTheHintsAndChangeNoToken() {
    Path dir = TestCheckpoints.get(Preset.TINY, ModelFamily.MIXTRAL, DType.BF16);
    try (LocalGenerator gen = LocalGenerator.open(dir, 1)) {
      List<GenerationRequest> requests = requests(gen.tokenizer().vocabSize());
      List<GenerationResult> reference = gen.generateBatch(requests);
      int[] hinted = new int[2];
      for (int extra = 0; extra <= 1; extra++) {
        Collecting listener = new Collecting();
        Prefetcher prefetcher = new Prefetcher(gen.model(), 1, extra, listener);
        List<GenerationResult> actual = generate(gen, gen.model().experts(), prefetcher, requests);
        for (int i = 0; i < requests.size(); i++) {
          assertArrayEquals(reference.get(i).generatedIds(), actual.get(i).generatedIds(), "extra " + extra + " req " + i);
        }
        hinted[extra] = listener.hints.stream().mapToInt(h -> h[2]).sum();
      }
      assertTrue(hinted[1] > hinted[0], "one more expert per row hints more: " + hinted[1] + " vs " + hinted[0]);
    }
  }

  @Test
  void aLayerWhoseExpertsAllStayWarmIsNeitherPredictedNorHinted() {
    Path dir = TestCheckpoints.get(Preset.SMALL, ModelFamily.MIXTRAL, DType.BF16);
    try (LocalGenerator gen = LocalGenerator.open(dir, 1)) {
      int layers = gen.model().config().numLayers();
      // Layer 1's experts all stay warm where they run; the others do not.
      RecordingExperts experts = new RecordingExperts(gen.model().experts()) {
        @Override
        public boolean wantsHints(int layer) {
          return layer != 1;
        }
      };
      Collecting listener = new Collecting();
      List<int[]> skips = new ArrayList<>();
      PrefetchListener both = new PrefetchListener() {
        @Override
        public void onHints(int sourceLayer, int targetLayer, int[] hinted) {
          listener.onHints(sourceLayer, targetLayer, hinted);
        }

        @Override
        public void onSkipped(int sourceLayer, int targetLayer) {
          skips.add(new int[] {sourceLayer, targetLayer});
        }

        @Override
        public void onAccuracy(PredictionAccuracy accuracy) {
          listener.onAccuracy(accuracy);
        }
      };
      Prefetcher prefetcher = new Prefetcher(gen.model(), 2, 0, both); // layer 1 only from layer 0
      List<GenerationRequest> requests = requests(gen.tokenizer().vocabSize());
      List<GenerationResult> reference = gen.generateBatch(requests);
      List<GenerationResult> actual = generate(gen, experts, prefetcher, requests);
      for (int i = 0; i < requests.size(); i++) {
        assertArrayEquals(reference.get(i).generatedIds(), actual.get(i).generatedIds(), "req " + i);
      }
      assertFalse(experts.calls.contains("prefetch 1"), "no hint for a layer that stays warm: " + experts.calls);
      assertTrue(listener.hints.stream().noneMatch(h -> h[1] == 1));
      assertTrue(listener.accuracies.stream().noneMatch(a -> a.layer() == 1), "an unpredicted layer is not scored");
      assertTrue(Double.isNaN(prefetcher.accuracy(1)));
      assertEquals(0, prefetcher.hintsIssued(1));
      assertTrue(prefetcher.predictionsSkipped(1) > 0);
      assertTrue(skips.stream().allMatch(s -> s[0] == 0 && s[1] == 1), "only layer 1, from layer 0: " + skips.size());
      assertEquals(prefetcher.predictionsSkipped(1), skips.size());
      for (int l = 2; l < layers; l++) {
        assertTrue(prefetcher.hintsIssued(l) > 0, "layer " + l + " is still hinted");
        assertEquals(0, prefetcher.predictionsSkipped(l));
      }
    }
  }
}

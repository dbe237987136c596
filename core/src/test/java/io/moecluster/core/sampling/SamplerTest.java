package io.moecluster.core.sampling;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Random;
import java.util.Set;
import org.junit.jupiter.api.Test;

class SamplerTest {

  private static final int[] NO_HISTORY = new int[0];

  private static SamplingParams params(float temperature, int topK, float topP, float minP) {
    return new SamplingParams(temperature, topK, topP, minP, 1f, 1234L);
  }

  private static float[] randomLogits(long seed, int vocab) {
    Random random = new Random(seed);
    float[] logits = new float[vocab];
    for (int i = 0; i < vocab; i++) {
      logits[i] = (float) (random.nextGaussian() * 3);
    }
    return logits;
  }

  /** Logits whose softmax is exactly the given probabilities (up to rounding). */
  private static float[] logitsFor(double... probabilities) {
    float[] logits = new float[probabilities.length];
    for (int i = 0; i < logits.length; i++) {
      logits[i] = (float) Math.log(probabilities[i]);
    }
    return logits;
  }

  @Test
  void greedyPicksArgmax() {
    Sampler sampler = new Sampler(SamplingParams.GREEDY);
    assertEquals(2, sampler.sample(new float[] {0.1f, -3f, 7.5f, 7.4f}, 0, NO_HISTORY, 0));
    float[] logits = randomLogits(7, 32_000);
    assertEquals(Sampler.argmax(logits), sampler.sample(logits, 5, NO_HISTORY, 0));
  }

  @Test
  void greedyBreaksTiesByLowestId() {
    Sampler sampler = new Sampler(SamplingParams.GREEDY);
    assertEquals(1, sampler.sample(new float[] {1f, 3f, 2f, 3f}, 0, NO_HISTORY, 0));
  }

  @Test
  void logitsAreNotModified() {
    float[] logits = randomLogits(3, 1000);
    float[] copy = logits.clone();
    int[] history = {1, 2, 3};
    new Sampler(new SamplingParams(0.7f, 50, 0.9f, 0.05f, 1.3f, 9L)).sample(logits, 3, history, 3);
    new Sampler(new SamplingParams(0.7f, 0, 0.9f, 0.05f, 1.3f, 9L)).sample(logits, 3, history, 3);
    assertArrayEquals(copy, logits);
  }

  @Test
  void sameSeedAndPositionGiveSameToken() {
    float[] logits = randomLogits(11, 5000);
    SamplingParams p = new SamplingParams(1.0f, 0, 1f, 0f, 1f, 42L);
    for (int position = 0; position < 200; position++) {
      int first = new Sampler(p).sample(logits, position, NO_HISTORY, 0);
      int second = new Sampler(p).sample(logits.clone(), position, NO_HISTORY, 0);
      assertEquals(first, second, "position " + position);
    }
  }

  @Test
  void differentSeedsGiveDifferentDraws() {
    float[] logits = new float[100]; // uniform: every draw is equally likely
    Sampler a = new Sampler(new SamplingParams(1f, 0, 1f, 0f, 1f, 1L));
    Sampler b = new Sampler(new SamplingParams(1f, 0, 1f, 0f, 1f, 2L));
    int differences = 0;
    Set<Integer> seen = new HashSet<>();
    for (int position = 0; position < 500; position++) {
      int x = a.sample(logits, position, NO_HISTORY, 0);
      int y = b.sample(logits, position, NO_HISTORY, 0);
      seen.add(x);
      if (x != y) {
        differences++;
      }
    }
    assertTrue(differences > 450, "only " + differences + " of 500 draws differ");
    assertTrue(seen.size() > 90, "draws cover only " + seen.size() + " of 100 tokens");
  }

  @Test
  void uniformIsAPureFunctionOfSeedAndPosition() {
    assertEquals(Sampler.uniform(5L, 17), Sampler.uniform(5L, 17));
    assertNotEquals(Sampler.uniform(5L, 17), Sampler.uniform(5L, 18));
    assertNotEquals(Sampler.uniform(5L, 17), Sampler.uniform(6L, 17));
    for (int position = 0; position < 10_000; position++) {
      double u = Sampler.uniform(-3L, position);
      assertTrue(u >= 0 && u < 1);
    }
  }

  @Test
  void topKOneEqualsGreedy() {
    for (int trial = 0; trial < 20; trial++) {
      float[] logits = randomLogits(100 + trial, 32_000);
      Sampler sampler = new Sampler(params(1.5f, 1, 1f, 0f));
      assertEquals(Sampler.argmax(logits), sampler.sample(logits, trial, NO_HISTORY, 0));
    }
  }

  @Test
  void topKKeepsOnlyTheKBest() {
    float[] logits = randomLogits(5, 1000);
    int[] order = idsByLogitDescending(logits);
    Set<Integer> allowed = Set.of(order[0], order[1], order[2]);
    Sampler sampler = new Sampler(params(5f, 3, 1f, 0f)); // hot: the tail would show up if kept
    Set<Integer> drawn = new HashSet<>();
    for (int position = 0; position < 300; position++) {
      drawn.add(sampler.sample(logits, position, NO_HISTORY, 0));
    }
    assertEquals(allowed, drawn);
  }

  @Test
  void tinyTopPEqualsGreedy() {
    for (int trial = 0; trial < 20; trial++) {
      float[] logits = randomLogits(200 + trial, 50_000);
      int expected = Sampler.argmax(logits);
      assertEquals(expected,
          new Sampler(params(1f, 0, 1e-6f, 0f)).sample(logits, trial, NO_HISTORY, 0));
      assertEquals(expected,
          new Sampler(params(1f, 100, 1e-6f, 0f)).sample(logits, trial, NO_HISTORY, 0));
    }
  }

  @Test
  void topPKeepsTheSmallestPrefixReachingP() {
    float[] logits = logitsFor(0.5, 0.3, 0.15, 0.05);
    for (int topK : new int[] {0, 4, 3}) { // 0 and 4 take the unsorted path, 3 the top-k one
      Sampler sampler = new Sampler(params(1f, topK, 0.75f, 0f));
      Set<Integer> drawn = new HashSet<>();
      for (int position = 0; position < 500; position++) {
        drawn.add(sampler.sample(logits, position, NO_HISTORY, 0));
      }
      assertEquals(Set.of(0, 1), drawn, "top_k " + topK);
    }
  }

  @Test
  void topPOnALargeFlatVocabularyMatchesAFullSort() {
    // Nearly flat logits make the nucleus large, so the threshold has to drop several times.
    Random random = new Random(99);
    float[] logits = new float[50_000];
    for (int i = 0; i < logits.length; i++) {
      logits[i] = (float) (random.nextDouble() * 0.5);
    }
    float topP = 0.9f;
    Set<Integer> nucleus = referenceNucleus(logits, topP);
    assertTrue(nucleus.size() > 40_000, "nucleus " + nucleus.size());
    Sampler sampler = new Sampler(params(1f, 0, topP, 0f));
    for (int position = 0; position < 300; position++) {
      int token = sampler.sample(logits, position, NO_HISTORY, 0);
      assertTrue(nucleus.contains(token), "token " + token + " outside the nucleus");
    }
  }

  @Test
  void minPDropsTokensBelowAFractionOfTheTop() {
    float[] logits = logitsFor(0.5, 0.3, 0.15, 0.05);
    for (int topK : new int[] {0, 4}) {
      Sampler sampler = new Sampler(params(1f, topK, 1f, 0.5f)); // keeps p >= 0.25
      Set<Integer> drawn = new HashSet<>();
      for (int position = 0; position < 500; position++) {
        drawn.add(sampler.sample(logits, position, NO_HISTORY, 0));
      }
      assertEquals(Set.of(0, 1), drawn, "top_k " + topK);
    }
  }

  @Test
  void repetitionPenaltyChangesTheArgmax() {
    float[] logits = {2.0f, 1.9f, -1.0f, -1.1f};
    SamplingParams penalized = new SamplingParams(0f, 0, 1f, 0f, 1.2f, 0L);
    // Positive logit: 2.0 / 1.2 = 1.67 < 1.9.
    assertEquals(1, new Sampler(penalized).sample(logits, 1, new int[] {0}, 1));
    // Negative logit: -1.0 * 1.2 = -1.2 < -1.1.
    float[] negatives = {-1.0f, -1.1f};
    assertEquals(1, new Sampler(penalized).sample(negatives, 1, new int[] {0}, 1));
    // Without the penalty the argmax stays.
    assertEquals(0, new Sampler(SamplingParams.GREEDY).sample(logits, 1, new int[] {0}, 1));
  }

  @Test
  void repetitionPenaltyAppliesOncePerDistinctTokenAndOnlyWithinHistoryLength() {
    float[] logits = {2.0f, 1.6f};
    Sampler sampler = new Sampler(new SamplingParams(0f, 0, 1f, 0f, 1.2f, 0L));
    // Once: 2.0 / 1.2 = 1.67 > 1.6. Three times would give 1.16.
    assertEquals(0, sampler.sample(logits, 3, new int[] {0, 0, 0}, 3));
    // Entries past historyLength are ignored.
    assertEquals(0, sampler.sample(new float[] {2.0f, 1.9f}, 0, new int[] {0}, 0));
  }

  @Test
  void historyOutsideTheVocabularyIsRejected() {
    Sampler sampler = new Sampler(new SamplingParams(0f, 0, 1f, 0f, 1.2f, 0L));
    assertThrows(IllegalArgumentException.class,
        () -> sampler.sample(new float[] {1f, 2f}, 0, new int[] {5}, 1));
  }

  @Test
  void allNegativeInfinityFallsBackToLowestId() {
    float[] logits = {Float.NEGATIVE_INFINITY, Float.NEGATIVE_INFINITY, Float.NaN};
    assertEquals(0, new Sampler(params(1f, 0, 0.9f, 0.1f)).sample(logits, 0, NO_HISTORY, 0));
  }

  @Test
  void drawsFollowSoftmaxOfLogitsOverTemperature() {
    float[] logits = {1.0f, 0.5f, 0.0f, -0.5f, 2.0f};
    float temperature = 0.8f;
    int draws = 20_000;
    Sampler sampler = new Sampler(new SamplingParams(temperature, 0, 1f, 0f, 1f, 2024L));
    int[] counts = new int[logits.length];
    for (int position = 0; position < draws; position++) {
      counts[sampler.sample(logits, position, NO_HISTORY, 0)]++;
    }
    double[] expected = softmax(logits, temperature);
    double chiSquare = 0;
    for (int i = 0; i < logits.length; i++) {
      double e = expected[i] * draws;
      chiSquare += (counts[i] - e) * (counts[i] - e) / e;
    }
    // 4 degrees of freedom: P(chi2 > 18.47) = 0.001.
    assertTrue(chiSquare < 18.47,
        "chi-square " + chiSquare + " counts " + Arrays.toString(counts));
  }

  private static double[] softmax(float[] logits, float temperature) {
    double max = Double.NEGATIVE_INFINITY;
    for (float l : logits) {
      max = Math.max(max, l / temperature);
    }
    double[] p = new double[logits.length];
    double sum = 0;
    for (int i = 0; i < logits.length; i++) {
      p[i] = Math.exp(logits[i] / temperature - max);
      sum += p[i];
    }
    for (int i = 0; i < p.length; i++) {
      p[i] /= sum;
    }
    return p;
  }

  private static int[] idsByLogitDescending(float[] logits) {
    List<Integer> ids = new ArrayList<>();
    for (int i = 0; i < logits.length; i++) {
      ids.add(i);
    }
    ids.sort((a, b) -> logits[a] != logits[b] ? Float.compare(logits[b], logits[a]) : a - b);
    return ids.stream().mapToInt(Integer::intValue).toArray();
  }

  private static Set<Integer> referenceNucleus(float[] logits, float topP) {
    double[] p = softmax(logits, 1f);
    int[] order = idsByLogitDescending(logits);
    Set<Integer> nucleus = new HashSet<>();
    double cumulative = 0;
    for (int id : order) {
      nucleus.add(id);
      cumulative += p[id];
      if (cumulative >= topP) {
        break;
      }
    }
    return nucleus;
  }

  @Test
  @org.junit.jupiter.api.Timeout(10) // the bug was an endless loop
  void overflowingLogitsSampleLikeGreedyInsteadOfSpinningOnNaN() {
    float[] logits = {1f, 5f, 3f, -2f, 4.5f};
    // The temperature's limit: 5 / 1e-40 overflows to +inf.
    for (float topP : new float[] {1f, 0.9f}) {
      for (float minP : new float[] {0f, 0.1f}) {
        Sampler tiny = new Sampler(new SamplingParams(1e-40f, 0, topP, minP, 1f, 7L));
        for (int position = 0; position < 20; position++) {
          assertEquals(1, tiny.sample(logits, position, new int[0], 0), "top-p " + topP + ", min-p " + minP);
        }
      }
    }
    // A penalty near 0 multiplies a seen positive logit up to +inf: that token wins.
    Sampler boosted = new Sampler(new SamplingParams(1f, 0, 0.9f, 0f, 1e-38f, 7L));
    assertEquals(4, boosted.sample(logits, 0, new int[] {4}, 1));
    // A model's own +inf wins too, the lowest id among several.
    Sampler plain = new Sampler(new SamplingParams(0.8f, 0, 0.95f, 0.05f, 1f, 7L));
    float[] inf = {1f, Float.POSITIVE_INFINITY, 3f, Float.POSITIVE_INFINITY};
    assertEquals(1, plain.sample(inf, 3, new int[0], 0));
  }
}

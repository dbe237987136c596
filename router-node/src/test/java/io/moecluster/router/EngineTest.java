package io.moecluster.router;

import io.moecluster.expert.TestClusters;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moecluster.core.checkpoint.CheckpointSpec;
import io.moecluster.core.checkpoint.CheckpointWriter;
import io.moecluster.core.checkpoint.Preset;
import io.moecluster.core.generate.GenerationRequest;
import io.moecluster.core.generate.LocalGenerator;
import io.moecluster.core.model.ExpertExecutor;
import io.moecluster.core.model.ExpertTask;
import io.moecluster.core.sampling.SamplingParams;
import io.moecluster.core.tensor.DType;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/** The engine loop without a cluster: in-process experts, slowed down so steps can be observed. */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class EngineTest {
  @TempDir static Path dir;
  static LocalGenerator local;

  @BeforeAll
  static void load() {
    CheckpointWriter.write(CheckpointSpec.of(Preset.TINY, DType.F32, 11), dir);
    local = LocalGenerator.open(dir, 1);
  }

  @AfterAll
  static void close() {
    local.close();
  }

  /** In-process experts that take a few milliseconds per layer. */
  private static ExpertExecutor slowExperts() {
    ExpertExecutor inner = local.model().experts();
    return new ExpertExecutor() {
      @Override
      public List<float[]> run(int layer, List<ExpertTask> tasks) {
        try {
          Thread.sleep(3);
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
        }
        return inner.run(layer, tasks);
      }
    };
  }

  private static GenerationRequest request(int[] prompt, int maxTokens) {
    return new GenerationRequest(prompt, SamplingParams.GREEDY, maxTokens, List.of(), true);
  }

  /** In-process experts that throw {@code error} at their next call, once. */
  private static ExpertExecutor expertsThatThrowOnce(java.util.concurrent.atomic.AtomicReference<Error> error) {
    ExpertExecutor inner = local.model().experts();
    return new ExpertExecutor() {
      @Override
      public List<float[]> run(int layer, List<ExpertTask> tasks) {
        Error e = error.getAndSet(null);
        if (e != null) {
          throw e;
        }
        return inner.run(layer, tasks);
      }
    };
  }

  @Test
  void aStepOutOfMemoryFailsItsSequencesAndTheEngineGoesOn() throws Exception {
    var error = new java.util.concurrent.atomic.AtomicReference<Error>();
    try (Engine engine = new Engine(local.model(), local.tokenizer(), expertsThatThrowOnce(error), 4, 4)) {
      error.set(new OutOfMemoryError("Java heap space"));
      assertFailsAndTheEngineGoesOn(engine, "FAILED RESOURCE_EXHAUSTED: the router ran out of memory");
    }
  }

  /** A first request ends with {@code failure}; the engine lives on and serves a second. */
  private static void assertFailsAndTheEngineGoesOn(Engine engine, String failure) throws Exception {
    RecordingListener a = new RecordingListener();
    engine.submit("a", request(new int[] {1, 5, 9}, 8), a);
    String end = a.end.get(10, TimeUnit.SECONDS);
    assertTrue(end.startsWith(failure), end);
    assertTrue(engine.alive());
    RecordingListener b = new RecordingListener();
    engine.submit("b", request(new int[] {2, 7}, 4), b);
    assertEquals("LENGTH", b.end.get(10, TimeUnit.SECONDS));
  }

  @Test
  void aKvCacheThatDoesNotFitFailsItsRequestAndTheEngineGoesOn() throws Exception {
    try (Engine engine = new Engine(local.model(), local.tokenizer(), local.model().experts(), 4, 4)) {
      var once = new java.util.concurrent.atomic.AtomicBoolean(true);
      engine.beforeAdmit = () -> {
        if (once.getAndSet(false)) {
          throw new OutOfMemoryError("Java heap space");
        }
      };
      assertFailsAndTheEngineGoesOn(engine, "FAILED RESOURCE_EXHAUSTED: the router has no memory");
      TestClusters.await(java.time.Duration.ofSeconds(5), "idle", () -> engine.running() == 0 && engine.waiting() == 0);
    }
  }

  @Test
  void anEngineWhoseLoopDiedSaysSoAndRefusesSubmits() throws Exception {
    var error = new java.util.concurrent.atomic.AtomicReference<Error>(new InternalError("broken"));
    try (Engine engine = new Engine(local.model(), local.tokenizer(), expertsThatThrowOnce(error), 4, 4)) {
      RecordingListener a = new RecordingListener();
      engine.submit("a", request(new int[] {1, 5, 9}, 8), a);
      assertTrue(a.end.get(10, TimeUnit.SECONDS).startsWith("FAILED UNAVAILABLE"));
      TestClusters.await(java.time.Duration.ofSeconds(5), "loop ended", () -> !engine.alive());
      RecordingListener b = new RecordingListener();
      engine.submit("b", request(new int[] {2, 7}, 4), b);
      assertTrue(b.end.get(10, TimeUnit.SECONDS).startsWith("FAILED UNAVAILABLE"));
    }
  }

  @Test
  void anUnboundedQueueSettingAcceptsRequests() throws Exception {
    // max-waiting = Integer.MAX_VALUE ("no limit") once overflowed the capacity check to negative.
    try (Engine engine = new Engine(local.model(), local.tokenizer(), local.model().experts(), 4, Integer.MAX_VALUE)) {
      RecordingListener a = new RecordingListener();
      engine.submit("a", request(new int[] {1, 5, 9}, 3), a);
      assertEquals("LENGTH", a.end.get(10, TimeUnit.SECONDS));
    }
  }

  @Test
  void cancelFreesTheSlotForAWaitingRequest() throws Exception {
    try (Engine engine = new Engine(local.model(), local.tokenizer(), slowExperts(), 1, 4)) {
      RecordingListener a = new RecordingListener();
      RecordingListener b = new RecordingListener();
      engine.submit("a", request(new int[] {1, 5, 9}, 10_000), a);
      a.firstToken.get(10, TimeUnit.SECONDS);
      engine.submit("b", request(new int[] {2, 7}, 4), b);
      TestClusters.await(java.time.Duration.ofSeconds(10), "b waiting", () -> engine.waiting() == 1);
      assertEquals(1, engine.running());
      assertTrue(b.tokens.isEmpty());

      engine.cancel("a");
      assertEquals("CANCELLED", a.end.get(10, TimeUnit.SECONDS));
      assertEquals(3, a.promptTokens);
      assertEquals(a.tokens.size(), a.completionTokens);
      assertEquals("LENGTH", b.end.get(10, TimeUnit.SECONDS));
      assertArrayEquals(local.generate(request(new int[] {2, 7}, 4), e -> {}).generatedIds(), b.ids());
      TestClusters.await(java.time.Duration.ofSeconds(5), "idle", () -> engine.running() == 0 && engine.waiting() == 0);

      engine.cancel("a"); // already ended: ignored
      engine.cancel("nobody");
    }
  }

  @Test
  void cancellingAWaitingRequestEndsIt() throws Exception {
    try (Engine engine = new Engine(local.model(), local.tokenizer(), slowExperts(), 1, 4)) {
      RecordingListener a = new RecordingListener();
      RecordingListener b = new RecordingListener();
      engine.submit("a", request(new int[] {1, 5, 9}, 10_000), a);
      engine.submit("b", request(new int[] {2, 7}, 4), b);
      a.firstToken.get(10, TimeUnit.SECONDS);
      engine.cancel("b");
      assertEquals("CANCELLED", b.end.get(10, TimeUnit.SECONDS));
      assertEquals(0, b.completionTokens);
      engine.cancel("a");
      assertEquals("CANCELLED", a.end.get(10, TimeUnit.SECONDS));
    }
  }

  @Test
  void badSubmissionsFailAndTheEngineKeepsServing() throws Exception {
    int context = local.config().contextLength();
    int vocab = local.config().vocabSize();
    try (Engine engine = new Engine(local.model(), local.tokenizer(), slowExperts(), 2, 1)) {
      RecordingListener tooLong = new RecordingListener();
      engine.submit("long", request(new int[context], 1), tooLong);
      assertTrue(tooLong.end.get(10, TimeUnit.SECONDS).startsWith("FAILED INVALID_ARGUMENT"), tooLong.end.get());
      assertTrue(tooLong.end.get().contains("context length"), tooLong.end.get());

      RecordingListener badId = new RecordingListener();
      engine.submit("bad", request(new int[] {1, vocab}, 1), badId);
      assertTrue(badId.end.get(10, TimeUnit.SECONDS).startsWith("FAILED INVALID_ARGUMENT"), badId.end.get());

      RecordingListener ok = new RecordingListener();
      engine.submit("ok", request(new int[] {3, 4}, 3), ok);
      assertEquals("LENGTH", ok.end.get(10, TimeUnit.SECONDS));
      assertEquals(3, ok.completionTokens);
    }
  }

  @Test
  void closeFailsActiveSequences() throws Exception {
    RecordingListener a = new RecordingListener();
    Engine engine = new Engine(local.model(), local.tokenizer(), slowExperts(), 1, 1);
    engine.submit("a", request(new int[] {1, 2}, 10_000), a);
    a.firstToken.get(10, TimeUnit.SECONDS);
    engine.close();
    assertTrue(a.end.get(10, TimeUnit.SECONDS).startsWith("FAILED UNAVAILABLE"), a.end.get());
    RecordingListener late = new RecordingListener();
    engine.submit("late", request(new int[] {1}, 1), late);
    assertTrue(late.end.get(1, TimeUnit.SECONDS).startsWith("FAILED UNAVAILABLE"));
  }

  /**
   * A submit that passed the closed check while the loop was still running, but enqueued after the
   * loop's last drain of its inbox, is answered all the same (it used to wait for ever).
   */
  @Test
  void aSubmitThatRacesTheEndOfTheLoopIsAnswered() throws Exception {
    Engine engine = new Engine(local.model(), local.tokenizer(), slowExperts(), 1, 1);
    engine.beforeEnqueue = engine::close; // the loop stops and drains its inbox between check and add
    RecordingListener late = new RecordingListener();
    engine.submit("late", request(new int[] {1}, 1), late);
    assertTrue(late.end.get(5, TimeUnit.SECONDS).startsWith("FAILED UNAVAILABLE"), late.end.getNow("no answer"));
  }
}

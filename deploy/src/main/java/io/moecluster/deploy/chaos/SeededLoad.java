package io.moecluster.deploy.chaos;

import io.grpc.ManagedChannel;
import io.grpc.StatusRuntimeException;
import io.moecluster.core.generate.GenerationRequest;
import io.moecluster.core.sampling.SamplingParams;
import io.moecluster.proto.v1.GenerateRequest;
import io.moecluster.proto.v1.GenerateResponse;
import io.moecluster.proto.v1.InferenceGrpc;
import io.moecluster.proto.v1.Token;
import io.moecluster.proto.v1.TokenIds;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Iterator;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicIntegerArray;

/**
 * The seeded load of a chaos run: N streams, each sending requests back to back through the
 * gateway until the duration is over (at least one each). Request (stream, round) is a pure
 * function of (seed, stream, round): a random prompt of token ids, greedy on even streams and
 * seeded sampling (temperature, top-p) on odd ones, {@code maxTokens} tokens ignoring EOS, so the
 * single-process reference can replay it exactly.
 */
public final class SeededLoad {
  /** The load's shape. {@code duration} zero: one request per stream. */
  public record Settings(int streams, Duration duration, int maxTokens, long seed, int vocabSize,
      Duration requestTimeout) {
    public Settings {
      if (streams < 1) {
        throw new IllegalArgumentException("--streams must be >= 1, got " + streams);
      }
      if (maxTokens < 2) {
        throw new IllegalArgumentException("--max-tokens must be >= 2 (a stall is a gap between tokens), got " + maxTokens);
      }
      if (duration.isNegative()) {
        throw new IllegalArgumentException("--duration must be >= 0, got " + duration);
      }
      if (requestTimeout.isZero() || requestTimeout.isNegative()) {
        throw new IllegalArgumentException("--request-timeout must be > 0, got " + requestTimeout);
      }
    }
  }

  private final Settings settings;
  private final ConcurrentLinkedQueue<StreamRecord> records = new ConcurrentLinkedQueue<>();
  /** Tokens streamed so far by each stream's current request, for the fault trigger. */
  private final AtomicIntegerArray currentTokens;
  private volatile long startNanos;

  public SeededLoad(Settings settings) {
    this.settings = settings;
    this.currentTokens = new AtomicIntegerArray(settings.streams());
  }

  /** The request of (stream, round); the same for the cluster and the reference. */
  public static GenerationRequest request(Settings s, int stream, int round) {
    SplittableRandom random = new SplittableRandom(s.seed() * 1_000_003L + stream * 7919L + round * 104_729L);
    int[] prompt = new int[4 + random.nextInt(21)];
    for (int i = 0; i < prompt.length; i++) {
      prompt[i] = random.nextInt(s.vocabSize());
    }
    SamplingParams sampling = stream % 2 == 0
        ? new SamplingParams(0f, 0, 1f, 0f, 1f, 0)
        : new SamplingParams(0.8f, 0, 0.95f, 0f, 1f, random.nextLong(1, Long.MAX_VALUE));
    return new GenerationRequest(prompt, sampling, s.maxTokens(), List.of(), true);
  }

  static GenerateRequest toProto(GenerationRequest r, String id) {
    SamplingParams s = r.sampling();
    return GenerateRequest.newBuilder()
        .setTokenIds(TokenIds.newBuilder().addAllIds(Arrays.stream(r.promptIds()).boxed().toList()))
        .setSampling(io.moecluster.proto.v1.SamplingParams.newBuilder().setTemperature(s.temperature())
            .setTopK(s.topK()).setTopP(s.topP()).setMinP(s.minP()).setRepetitionPenalty(s.repetitionPenalty())
            .setSeed(s.seed()))
        .setMaxTokens(r.maxTokens())
        .setIgnoreEos(r.ignoreEos())
        .setRequestId(id)
        .build();
  }

  /** Nanoseconds since the load started. */
  public long now() {
    return System.nanoTime() - startNanos;
  }

  /** Tokens the current request of {@code stream} has streamed so far. */
  public int currentTokens(int stream) {
    return currentTokens.get(stream);
  }

  /**
   * Unmeasured requests before the load, {@code streams} at once, 4 tokens each, so that every
   * node has its code compiled and its experts' weights loaded: the stalls then measure the fault,
   * not a cold start. Returns the errors of the warm-up requests that failed (none on a healthy
   * cluster).
   */
  public List<String> warmUp(ManagedChannel channel) throws InterruptedException {
    InferenceGrpc.InferenceBlockingStub stub = InferenceGrpc.newBlockingStub(channel);
    Settings warm = new Settings(settings.streams(), Duration.ZERO, 4, ~settings.seed(), settings.vocabSize(),
        settings.requestTimeout());
    List<String> errors = new java.util.concurrent.CopyOnWriteArrayList<>();
    List<Thread> threads = new ArrayList<>();
    for (int s = 0; s < settings.streams(); s++) {
      int stream = s;
      threads.add(Thread.ofVirtual().name("chaos-warm-up-" + s).start(() -> {
        try {
          Iterator<GenerateResponse> it = stub
              .withDeadlineAfter(settings.requestTimeout().toMillis(), TimeUnit.MILLISECONDS)
              .generate(toProto(request(warm, stream, 0), "chaos-warm-up-" + stream));
          it.forEachRemaining(r -> { });
        } catch (StatusRuntimeException e) {
          errors.add(e.getStatus().getCode() + ": " + e.getStatus().getDescription());
        }
      }));
    }
    for (Thread t : threads) {
      t.join();
    }
    return errors;
  }

  /** Runs the load to its end; returns every request's record, by stream and round. */
  public List<StreamRecord> run(ManagedChannel channel, Runnable onStart) throws InterruptedException {
    InferenceGrpc.InferenceBlockingStub stub = InferenceGrpc.newBlockingStub(channel);
    startNanos = System.nanoTime();
    onStart.run();
    List<Thread> threads = new ArrayList<>();
    for (int s = 0; s < settings.streams(); s++) {
      int stream = s;
      threads.add(Thread.ofVirtual().name("chaos-stream-" + s).start(() -> runStream(stub, stream)));
    }
    for (Thread t : threads) {
      t.join();
    }
    List<StreamRecord> out = new ArrayList<>(records);
    out.sort((a, b) -> a.stream() != b.stream() ? Integer.compare(a.stream(), b.stream())
        : Integer.compare(a.round(), b.round()));
    return out;
  }

  private void runStream(InferenceGrpc.InferenceBlockingStub stub, int stream) {
    long endNanos = settings.duration().toNanos();
    int round = 0;
    do {
      currentTokens.set(stream, 0);
      records.add(one(stub, stream, round));
      round++;
    } while (now() < endNanos);
  }

  private StreamRecord one(InferenceGrpc.InferenceBlockingStub stub, int stream, int round) {
    GenerationRequest request = request(settings, stream, round);
    int[] ids = new int[request.maxTokens()];
    long[] at = new long[request.maxTokens()];
    int n = 0;
    long start = now();
    String error = null;
    try {
      Iterator<GenerateResponse> it = stub
          .withDeadlineAfter(settings.requestTimeout().toMillis(), TimeUnit.MILLISECONDS)
          .generate(toProto(request, "chaos-" + stream + "-" + round));
      while (it.hasNext()) {
        GenerateResponse r = it.next();
        long arrived = now();
        for (Token t : r.getTokensList()) {
          if (n == ids.length) { // more tokens than asked for: keep them, the check reports them
            ids = Arrays.copyOf(ids, n * 2);
            at = Arrays.copyOf(at, n * 2);
          }
          ids[n] = t.getId();
          at[n++] = arrived;
        }
        currentTokens.set(stream, n);
      }
    } catch (StatusRuntimeException e) {
      var status = e.getStatus();
      error = status.getCode() + (status.getDescription() != null ? ": " + status.getDescription() : "");
    } catch (RuntimeException e) {
      error = e.toString();
    }
    return new StreamRecord(stream, round, request, Arrays.copyOf(ids, n), Arrays.copyOf(at, n), start, now(), error);
  }
}

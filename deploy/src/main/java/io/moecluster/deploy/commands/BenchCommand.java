package io.moecluster.deploy.commands;

import io.grpc.ManagedChannel;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.StreamObserver;
import io.moecluster.deploy.cli.ExitCodes;
import io.moecluster.deploy.cli.ProgressBars;
import io.moecluster.deploy.cluster.Gateways;
import io.moecluster.deploy.cluster.HostPort;
import io.moecluster.proto.v1.GenerateRequest;
import io.moecluster.proto.v1.GenerateResponse;
import io.moecluster.proto.v1.GetModelInfoRequest;
import io.moecluster.proto.v1.InferenceGrpc;
import io.moecluster.proto.v1.ModelInfo;
import io.moecluster.proto.v1.SamplingParams;
import io.moecluster.proto.v1.TokenIds;
import java.io.PrintWriter;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * {@code moe bench}: load on a gateway at several concurrency levels; reports time to first
 * token, inter-token latency (p50/p99) and output tokens/s per level.
 */
@Command(name = "bench",
    description = {"Benchmark a gateway: streaming requests at each concurrency level, with random prompts,",
        "greedy, ignoring EOS; reports time to first token, inter-token latency and output tokens/s."})
public final class BenchCommand implements Callable<Integer> {
  @Spec CommandSpec spec;

  @Option(names = "--target", paramLabel = "HOST:PORT", defaultValue = "127.0.0.1:50051",
      description = "the gateway's gRPC address (default: ${DEFAULT-VALUE})")
  String target;

  @Mixin ClientSecurityOptions security;

  @Option(names = "--concurrency", split = ",", paramLabel = "N[,N..]", defaultValue = "1,4,16",
      description = "requests in flight, one run per level (default: ${DEFAULT-VALUE})")
  List<Integer> concurrency;

  @Option(names = "--requests", description = "requests per level (default: ${DEFAULT-VALUE})", defaultValue = "32")
  int requests;

  @Option(names = "--prompt-tokens", description = "prompt length in tokens (default: ${DEFAULT-VALUE})", defaultValue = "64")
  int promptTokens;

  @Option(names = "--max-tokens", description = "tokens generated per request (default: ${DEFAULT-VALUE})", defaultValue = "32")
  int maxTokens;

  @Option(names = "--seed", description = "seed of the random prompts (default: ${DEFAULT-VALUE})", defaultValue = "0")
  long seed;

  @Option(names = "--warmup", description = "unmeasured requests before the first level (default: ${DEFAULT-VALUE})",
      defaultValue = "2")
  int warmup;

  @Option(names = "--timeout", paramLabel = "SECONDS", description = "deadline of each request (default: ${DEFAULT-VALUE})",
      defaultValue = "600")
  int timeoutSeconds;

  /** The figures of one level. */
  record Level(int concurrency, int requests, int errors, double ttftP50Ms, double ttftP99Ms, double itlP50Ms,
      double itlP99Ms, double outputTokensPerSecond) {}

  @Override
  public Integer call() throws InterruptedException {
    if (requests < 1 || promptTokens < 1 || maxTokens < 1 || warmup < 0 || timeoutSeconds < 1) {
      throw new IllegalArgumentException(
          "--requests, --prompt-tokens, --max-tokens and --timeout must be >= 1, --warmup >= 0");
    }
    for (int c : concurrency) {
      if (c < 1) {
        throw new IllegalArgumentException("--concurrency levels must be >= 1, got " + c);
      }
    }
    HostPort address = HostPort.parse(target, "--target");
    PrintWriter out = spec.commandLine().getOut();
    PrintWriter err = spec.commandLine().getErr();
    ManagedChannel channel = security.channel(address);
    try {
      // The callbacks only count and time tokens: they run on the transport's thread, not handed to
      // an executor thread per message (a wake-up per token that took cores from the gateway's host
      // when both share a machine).
      var stub = InferenceGrpc.newStub(channel).withExecutor(Runnable::run);
      ModelInfo info = InferenceGrpc.newBlockingStub(channel).withDeadlineAfter(30, TimeUnit.SECONDS)
          .getModelInfo(GetModelInfoRequest.getDefaultInstance());
      if (promptTokens >= info.getContextLength()) { // every request would be refused
        throw new IllegalArgumentException("--prompt-tokens " + promptTokens
            + " must be shorter than the model's context length (" + info.getContextLength() + ")");
      }
      out.printf(Locale.ROOT, "moe bench: %s at %s; prompt %d tokens, %d generated, %d requests per level%n",
          info.getName(), address, promptTokens, maxTokens, requests);
      out.flush();
      SplittableRandom random = new SplittableRandom(seed);
      if (warmup > 0) {
        run(stub, info, Math.min(warmup, 4), warmup, random.split(), "warm-up");
      }
      out.printf("%11s %8s %6s %12s %12s %11s %11s %14s%n", "concurrency", "requests", "errors", "ttft_p50_ms",
          "ttft_p99_ms", "itl_p50_ms", "itl_p99_ms", "output_tok/s");
      out.flush();
      int failed = 0;
      for (int c : concurrency) {
        // The same prompts at every level, so the levels differ only in concurrency.
        Level level = run(stub, info, c, requests, new SplittableRandom(seed), "concurrency " + c);
        failed += level.errors();
        out.printf(Locale.ROOT, "%11d %8d %6d %12.1f %12.1f %11.1f %11.1f %14.1f%n", level.concurrency(),
            level.requests(), level.errors(), level.ttftP50Ms(), level.ttftP99Ms(), level.itlP50Ms(),
            level.itlP99Ms(), level.outputTokensPerSecond());
        out.flush();
      }
      if (failed > 0) {
        err.println("moe: " + failed + " requests failed (first errors are above)");
        err.flush();
        return ExitCodes.FAILURE;
      }
      return ExitCodes.OK;
    } catch (StatusRuntimeException e) {
      return RemoteGeneration.report(e, err);
    } finally {
      Gateways.close(channel);
    }
  }

  private Level run(InferenceGrpc.InferenceStub stub, ModelInfo info, int inFlight, int count,
      SplittableRandom random, String task) throws InterruptedException {
    BenchStats ttft = new BenchStats();
    BenchStats itl = new BenchStats();
    AtomicLong tokens = new AtomicLong();
    AtomicInteger errors = new AtomicInteger();
    AtomicInteger finished = new AtomicInteger();
    AtomicReference<String> firstError = new AtomicReference<>();
    Semaphore slots = new Semaphore(inFlight);
    CountDownLatch done = new CountDownLatch(count);
    long start = System.nanoTime();
    try (ProgressBars.Progress progress = ProgressBars.count(task, count, "requests")) {
      for (int i = 0; i < count; i++) {
        GenerateRequest request = request(info, random);
        slots.acquire();
        long sent = System.nanoTime();
        stub.withDeadlineAfter(timeoutSeconds, TimeUnit.SECONDS).generate(request, new StreamObserver<>() {
          long previous;

          @Override
          public void onNext(GenerateResponse r) {
            int k = r.getTokensCount();
            if (k == 0) {
              return;
            }
            long now = System.nanoTime();
            if (previous == 0) {
              ttft.recordNanos(now - sent);
              for (int j = 1; j < k; j++) {
                itl.recordNanos(0);
              }
            } else {
              for (int j = 0; j < k; j++) {
                itl.recordNanos((now - previous) / k);
              }
            }
            previous = now;
            tokens.addAndGet(k);
          }

          @Override
          public void onError(Throwable t) {
            if (errors.getAndIncrement() == 0) {
              firstError.set(String.valueOf(t.getMessage()));
            }
            end();
          }

          @Override
          public void onCompleted() {
            end();
          }

          private void end() {
            progress.stepTo(finished.incrementAndGet());
            slots.release();
            done.countDown();
          }
        });
      }
      done.await();
    }
    if (firstError.get() != null) {
      spec.commandLine().getErr().println("moe: " + task + ": " + errors.get() + " errors, first: " + firstError.get());
      spec.commandLine().getErr().flush();
    }
    double seconds = (System.nanoTime() - start) / 1e9;
    return new Level(inFlight, count, errors.get(), ttft.percentileMillis(50), ttft.percentileMillis(99),
        itl.percentileMillis(50), itl.percentileMillis(99), tokens.get() / seconds);
  }

  /** A random prompt of --prompt-tokens ids, greedy, --max-tokens generated whatever the model says. */
  private GenerateRequest request(ModelInfo info, SplittableRandom random) {
    TokenIds.Builder ids = TokenIds.newBuilder();
    for (int i = 0; i < promptTokens; i++) {
      ids.addIds(random.nextInt(info.getVocabSize()));
    }
    return GenerateRequest.newBuilder()
        .setTokenIds(ids)
        .setSampling(SamplingParams.newBuilder().setTemperature(0f).setTopP(1f).setRepetitionPenalty(1f).setSeed(seed))
        .setMaxTokens(maxTokens)
        .setIgnoreEos(true)
        .setRequestId("bench")
        .build();
  }
}

package io.moecluster.router;

import io.moecluster.core.model.ExpertExecutor;
import io.moecluster.core.model.ExpertTask;
import io.moecluster.expert.ExpertEntity;
import io.moecluster.proto.cluster.v1.ComputeExperts;
import io.moecluster.proto.cluster.v1.ExpertCommand;
import io.moecluster.proto.cluster.v1.ExpertReply;
import io.moecluster.proto.cluster.v1.Prefetch;
import io.moecluster.proto.codec.ActivationCodec;
import io.prometheus.metrics.core.datapoints.CounterDataPoint;
import io.prometheus.metrics.core.datapoints.DistributionDataPoint;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.pekko.actor.typed.ActorRefResolver;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.cluster.sharding.typed.javadsl.ClusterSharding;
import org.apache.pekko.cluster.sharding.typed.javadsl.EntityRef;

/**
 * The cluster's {@link ExpertExecutor}: scatters each layer's expert tasks to the sharded expert
 * entities ({@code "<layer>/<expert>"}) and gathers their outputs. A task's rows are split into
 * chunks of at most {@code maxMessageBytes} of F32 activations (exact, so the tokens match a
 * single JVM); every chunk of every task is sent before any is awaited, and all are awaited
 * together under one timeout. Needs the expert sharding proxy (or region) inited on the system.
 * Counts the rows routed to each expert and times each layer's wait ({@link RouterMetrics}).
 */
public final class ShardedExperts implements ExpertExecutor {
  private final ClusterSharding sharding;
  private final ActorRefResolver resolver;
  private final Duration timeout;
  private final int maxMessageBytes;
  private final AtomicLong steps = new AtomicLong();
  private final Map<Long, CounterDataPoint> routed = new ConcurrentHashMap<>(); // (layer, expert)
  private final Map<Integer, DistributionDataPoint> waits = new ConcurrentHashMap<>(); // layer

  public ShardedExperts(ActorSystem<?> system, Duration timeout, int maxMessageBytes) {
    this.sharding = ClusterSharding.get(system);
    this.resolver = ActorRefResolver.get(system);
    this.timeout = timeout;
    this.maxMessageBytes = maxMessageBytes;
  }

  private static final boolean PROF = Boolean.getBoolean("moe.prof");
  private final AtomicLong profRtt = new AtomicLong(), profArrive = new AtomicLong();
  private long profWake;
  private long profWait, profCompute, profCalls, profSteps, profLast, profMsgs;

  private record Pending(int task, int chunk, int firstRow, int rows, CompletableFuture<ExpertReply> reply) {}

  @Override
  public List<float[]> run(int layer, List<ExpertTask> tasks) {
    long stepId = steps.incrementAndGet();
    long start = System.nanoTime();
    List<Pending> pending = new ArrayList<>();
    List<float[]> outputs = new ArrayList<>(tasks.size());
    for (int t = 0; t < tasks.size(); t++) {
      ExpertTask task = tasks.get(t);
      routed(layer, task.expert()).inc(task.rows());
      int hidden = task.input().length / task.rows();
      outputs.add(new float[task.input().length]); // [rows, hidden]
      int rowsPerChunk = Math.max(1, maxMessageBytes / (hidden * Float.BYTES));
      EntityRef<ExpertCommand> entity =
          sharding.entityRefFor(ExpertEntity.TYPE_KEY, ExpertEntity.entityId(layer, task.expert()));
      for (int first = 0, chunk = 0; first < task.rows(); first += rowsPerChunk, chunk++) {
        int rows = Math.min(rowsPerChunk, task.rows() - first);
        float[] slice = Arrays.copyOfRange(task.input(), first * hidden, (first + rows) * hidden); // [rows, hidden]
        ComputeExperts.Builder request = ComputeExperts.newBuilder()
            .setStepId(stepId)
            .setChunk(chunk)
            .setLayer(layer)
            .setExpert(task.expert())
            .setInput(ActivationCodec.encode(slice, rows, hidden));
        CompletableFuture<ExpertReply> reply = entity.<ExpertReply>ask(
                replyTo -> ExpertCommand.newBuilder()
                    .setCompute(request.setReplyTo(resolver.toSerializationFormat(replyTo)))
                    .build(),
                timeout)
            .toCompletableFuture();
        if (PROF) {
          long sentAt = System.nanoTime();
          reply.whenComplete((r, e) -> { profRtt.addAndGet(System.nanoTime() - sentAt); profArrive.set(System.nanoTime()); });
        }
        pending.add(new Pending(t, chunk, first, rows, reply));
      }
    }
    long deadline = System.nanoTime() + timeout.toNanos();
    for (Pending p : pending) {
      ExpertTask task = tasks.get(p.task());
      ExpertReply reply = await(layer, task.expert(), p.reply(), deadline);
      if (!reply.getError().isEmpty()) {
        throw new ExpertUnavailableException(layer, task.expert(),
            "expert " + layer + "/" + task.expert() + " failed on " + reply.getNode() + ": " + reply.getError(), null);
      }
      int hidden = task.input().length / task.rows();
      float[] out;
      try {
        out = ActivationCodec.decode(reply.getOutput());
      } catch (IllegalArgumentException e) {
        throw new ExpertUnavailableException(layer, task.expert(),
            "expert " + layer + "/" + task.expert() + " sent a malformed reply: " + e.getMessage(), e);
      }
      if (reply.getOutput().getRows() != p.rows() || out.length != p.rows() * hidden) {
        throw new ExpertUnavailableException(layer, task.expert(),
            "expert " + layer + "/" + task.expert() + " answered " + reply.getOutput().getRows() + " x "
                + reply.getOutput().getHidden() + " for " + p.rows() + " x " + hidden + " rows", null);
      }
      System.arraycopy(out, 0, outputs.get(p.task()), p.firstRow() * hidden, out.length);
    }
    if (PROF) {
      long now = System.nanoTime();
      profWait += now - start;
      profWake += now - profArrive.get();
      for (Pending p : pending) profCompute += (long) (p.reply().join().getComputeSeconds() * 1e9);
      profCalls++;
      if (layer == 0) { profSteps++; }
      if (profLast == 0) profLast = now;
      if (now - profLast > 5_000_000_000L) {
        org.slf4j.LoggerFactory.getLogger(ShardedExperts.class).info(
            "PROF steps={} layerCalls={} wait/step={}us compute/step={}us wall/step={}us msgs={} rtt/msg={}us wake/layer={}us",
            profSteps, profCalls, profWait / 1000 / Math.max(1, profSteps), profCompute / 1000 / Math.max(1, profSteps),
            (now - profLast) / 1000 / Math.max(1, profSteps), profMsgs, profRtt.get() / 1000 / Math.max(1, profMsgs), profWake / 1000 / Math.max(1, profCalls));
        profRtt.set(0); profWake = 0;
        profWait = 0; profCompute = 0; profCalls = 0; profSteps = 0; profLast = now; profMsgs = 0;
      }
      profMsgs += pending.size();
    }
    waits.computeIfAbsent(layer, l -> RouterMetrics.expertRequestSeconds().labelValues(Integer.toString(l)))
        .observe((System.nanoTime() - start) / 1e9);
    return outputs;
  }

  private CounterDataPoint routed(int layer, int expert) {
    return routed.computeIfAbsent(((long) layer << 32) | expert,
        k -> RouterMetrics.tokensRouted().labelValues(Integer.toString(layer), Integer.toString(expert)));
  }

  private ExpertReply await(int layer, int expert, CompletableFuture<ExpertReply> reply, long deadline) {
    try {
      long left = Math.max(0, deadline - System.nanoTime());
      return reply.get(left, TimeUnit.NANOSECONDS);
    } catch (TimeoutException | ExecutionException e) {
      throw new ExpertUnavailableException(layer, expert,
          "expert " + layer + "/" + expert + ": no expert node answered in time (" + timeout.toMillis()
              + " ms, moe.router.expert-timeout); are expert nodes up and reachable?", e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new ExpertUnavailableException(layer, expert,
          "interrupted while waiting for expert " + layer + "/" + expert, e);
    }
  }

  @Override
  public void prefetch(int layer, int[] experts) {
    for (int e : experts) {
      sharding.entityRefFor(ExpertEntity.TYPE_KEY, ExpertEntity.entityId(layer, e))
          .tell(ExpertCommand.newBuilder().setPrefetch(Prefetch.newBuilder().setLayer(layer).addExperts(e)).build());
    }
  }
}

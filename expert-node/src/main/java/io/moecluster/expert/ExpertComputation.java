package io.moecluster.expert;

import io.moecluster.core.model.ExpertWeights;
import io.moecluster.proto.cluster.v1.ComputeExperts;
import io.moecluster.proto.cluster.v1.ExpertReply;
import io.moecluster.proto.codec.ActivationCodec;
import io.prometheus.metrics.core.datapoints.CounterDataPoint;
import io.prometheus.metrics.core.datapoints.DistributionDataPoint;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.RejectedExecutionException;
import java.util.function.Consumer;

/**
 * What one expert entity does with a {@code ComputeExperts}: check it against the expert's
 * weights, lease the weights from the node's cache, run the FFN on the node's backend and answer.
 * Thread-safe and stateless between calls, so the entity's actor (requests through Artery) and
 * the node's {@link ExpertDataServer} (requests over the data channel) share it.
 *
 * <p>Weights that are ready (warm, or the mapped bytes of a run-cold miss) are computed on the
 * calling thread, with no hand-off; a miss that waits for its load runs on the compute executor
 * once the load completes. A GPU backend answers from its own compute thread.
 */
final class ExpertComputation {
  private final ExpertEntity.NodeContext node;
  private final String entityId;
  private final ExpertEntity.Id id;
  private final ExpertWeights weights;
  private final DistributionDataPoint computeSeconds;
  private final CounterDataPoint tokens;

  ExpertComputation(ExpertEntity.NodeContext node, String entityId, ExpertEntity.Id id, ExpertWeights weights) {
    this.node = node;
    this.entityId = entityId;
    this.id = id;
    this.weights = weights;
    this.computeSeconds = ExpertMetrics.computeSeconds().labelValues(node.nodeAddress(), Integer.toString(id.layer()));
    this.tokens = ExpertMetrics.tokens().labelValues(node.nodeAddress(), Integer.toString(id.layer()),
        Integer.toString(id.expert()));
  }

  /** A prefetch hint: the cache may load the expert, a GPU backend upload it; never blocks. */
  void prefetch() {
    node.cache().prefetch(id.layer(), id.expert());
    node.backend().prefetch(id.layer(), id.expert(), weights);
  }

  /** The reply to {@code req} from {@code node}, before its output or error is set. */
  static ExpertReply.Builder replyTo(ComputeExperts req, String node) {
    return ExpertReply.newBuilder()
        .setStepId(req.getStepId())
        .setChunk(req.getChunk())
        .setLayer(req.getLayer())
        .setExpert(req.getExpert())
        .setNode(node);
  }

  /** Computes {@code req} and hands the reply (output or error) to {@code answer}, exactly once. */
  void run(ComputeExperts req, Consumer<ExpertReply> answer) {
    ExpertReply.Builder reply = replyTo(req, node.nodeAddress());
    String problem = check(req);
    if (problem != null) {
      answer.accept(reply.setError(problem).build());
      return;
    }
    CompletableFuture<ExpertWeightCache.Lease> acquired = node.cache().acquire(id.layer(), id.expert());
    if (acquired.isDone() && !acquired.isCompletedExceptionally()) {
      compute(acquired.join(), req, reply, answer);
      return;
    }
    acquired.whenComplete((lease, err) -> {
      if (err != null) {
        Throwable cause = unwrap(err);
        answer.accept(reply.setNodeFault(true).setError(cause instanceof IllegalStateException
            ? "expert node " + node.nodeAddress() + " is shutting down"
            : "expert " + entityId + " has no weights: " + cause.getMessage()).build());
        return;
      }
      try {
        node.compute().execute(() -> compute(lease, req, reply, answer));
      } catch (RejectedExecutionException e) {
        lease.close();
        answer.accept(reply.setNodeFault(true).setError("expert node " + node.nodeAddress() + " is shutting down")
            .build());
      }
    });
  }

  /** Runs the FFN on the leased weights and answers; closes the lease once the backend is done with them. */
  private void compute(ExpertWeightCache.Lease lease, ComputeExperts req, ExpertReply.Builder reply,
      Consumer<ExpertReply> answer) {
    int rows = req.getInput().getRows();
    int hidden = req.getInput().getHidden();
    float[] x;
    try {
      x = ActivationCodec.decode(req.getInput()); // [rows, hidden]
    } catch (RuntimeException e) {
      lease.close();
      answer.accept(reply.setError("expert " + entityId + " failed: " + e).build());
      return;
    }
    long start = System.nanoTime();
    CompletableFuture<float[]> result;
    try {
      result = node.backend().forward(id.layer(), id.expert(), lease.weights(), x, rows); // [rows, hidden]
    } catch (RuntimeException e) {
      result = CompletableFuture.failedFuture(e);
    }
    result.whenComplete((out, err) -> {
      ExpertReply done;
      try (lease) {
        if (err != null) {
          done = reply.setNodeFault(true).setError("expert " + entityId + " failed: " + unwrap(err)).build();
        } else {
          double seconds = (System.nanoTime() - start) / 1e9;
          computeSeconds.observe(seconds);
          tokens.inc(rows);
          done = reply.setOutput(ActivationCodec.encode(out, rows, hidden)).setComputeSeconds(seconds)
              .setStaysWarm(lease.warm() && node.cache().holdsEveryExpert() && !node.backend().warmsOnHints())
              .build();
        }
      } catch (RuntimeException e) {
        done = reply.clearOutput().setNodeFault(true).setError("expert " + entityId + " failed: " + e).build();
      }
      answer.accept(done);
    });
  }

  /** Why the request cannot run, or null when it can. */
  private String check(ComputeExperts req) {
    if (req.getLayer() != id.layer() || req.getExpert() != id.expert()) {
      return "request for expert " + req.getLayer() + "/" + req.getExpert() + " reached entity " + entityId;
    }
    int hidden = weights.hiddenSize();
    var in = req.getInput();
    if (in.getRows() == 0) {
      return "expert " + entityId + ": input has no rows";
    }
    if (in.getHidden() != hidden) {
      return "expert " + entityId + ": input rows have " + in.getHidden() + " elements, the model's hidden size is " + hidden;
    }
    int width = switch (in.getDtype()) {
      case F32 -> Float.BYTES;
      case BF16 -> 2;
      default -> 0;
    };
    if (width == 0) {
      return "expert " + entityId + ": unknown activation dtype " + in.getDtypeValue();
    }
    long expected = (long) in.getRows() * in.getHidden() * width;
    if (expected != in.getData().size()) {
      return "expert " + entityId + ": input of " + in.getRows() + " x " + in.getHidden() + " " + in.getDtype()
          + " needs " + expected + " bytes, got " + in.getData().size();
    }
    return null;
  }

  private static Throwable unwrap(Throwable err) {
    return err instanceof CompletionException && err.getCause() != null ? err.getCause() : err;
  }
}

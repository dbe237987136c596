package io.moecluster.expert;

import io.moecluster.core.model.ExpertWeights;
import io.moecluster.proto.cluster.v1.ComputeExperts;
import io.moecluster.proto.cluster.v1.ExpertReply;
import io.moecluster.proto.codec.ActivationCodec;
import io.prometheus.metrics.core.datapoints.CounterDataPoint;
import io.prometheus.metrics.core.datapoints.DistributionDataPoint;
import java.util.Collections;
import java.util.List;
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
 * calling thread, with no hand-off, and the calls of a layer that reached the node together are
 * computed together ({@link #computeAll}); a miss that waits for its load runs on the compute
 * executor once the load completes. A GPU backend answers from its own compute thread.
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
    Ready ready = prepare(req, answer);
    if (ready != null) {
      computeAlone(ready);
    }
  }

  /**
   * A call whose weights are leased and whose input is decoded, for {@link #computeAll} to compute
   * with the other calls that reached the node with it.
   */
  record Ready(ExpertComputation computation, ExpertReply.Builder reply, ExpertWeightCache.Lease lease, float[] x,
      int rows, Consumer<ExpertReply> answer) {}

  /**
   * Starts {@code req}. Returns it ready to compute when its weights are ready (warm, or the mapped
   * bytes of a run-cold miss); the caller must then pass it to {@link #computeAll}. Otherwise
   * returns null, having answered it (a bad request) or arranged for it to run on the compute
   * executor once its weights are loaded.
   */
  Ready prepare(ComputeExperts req, Consumer<ExpertReply> answer) {
    ExpertReply.Builder reply = replyTo(req, node.nodeAddress());
    String problem = check(req);
    if (problem != null) {
      answer.accept(reply.setError(problem).build());
      return null;
    }
    CompletableFuture<ExpertWeightCache.Lease> acquired = node.cache().acquire(id.layer(), id.expert());
    if (acquired.isDone() && !acquired.isCompletedExceptionally()) {
      return ready(acquired.join(), req, reply, answer);
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
        node.compute().execute(() -> {
          Ready ready = ready(lease, req, reply, answer);
          if (ready != null) {
            computeAlone(ready);
          }
        });
      } catch (RejectedExecutionException e) {
        lease.close();
        answer.accept(reply.setNodeFault(true).setError("expert node " + node.nodeAddress() + " is shutting down")
            .build());
      }
    });
    return null;
  }

  /** The call with its input decoded, or null when the input cannot be decoded (answered, lease closed). */
  private Ready ready(ExpertWeightCache.Lease lease, ComputeExperts req, ExpertReply.Builder reply,
      Consumer<ExpertReply> answer) {
    try {
      float[] x = ActivationCodec.decode(req.getInput()); // [rows, hidden]
      return new Ready(this, reply, lease, x, req.getInput().getRows(), answer);
    } catch (RuntimeException e) {
      lease.close();
      answer.accept(reply.setError("expert " + entityId + " failed: " + e).build());
      return null;
    }
  }

  /**
   * Runs the FFNs of {@code calls}, all of one node, together on the node's backend
   * ({@link ExpertBackend#forwardAll}), and answers each; closes each lease once the backend is done
   * with its weights. A call's compute time is that of the pass that computed it.
   */
  static void computeAll(List<Ready> calls) {
    int m = calls.size();
    ExpertBackend backend = calls.get(0).computation().node.backend();
    int[] layers = new int[m];
    int[] experts = new int[m];
    ExpertWeights[] weights = new ExpertWeights[m];
    float[][] xs = new float[m][];
    int[] rows = new int[m];
    for (int j = 0; j < m; j++) {
      Ready call = calls.get(j);
      layers[j] = call.computation().id.layer();
      experts[j] = call.computation().id.expert();
      weights[j] = call.lease().weights();
      xs[j] = call.x();
      rows[j] = call.rows();
    }
    long start = System.nanoTime();
    List<CompletableFuture<float[]>> results;
    try {
      results = backend.forwardAll(layers, experts, weights, xs, rows);
    } catch (RuntimeException | OutOfMemoryError e) {
      // Every call answered (a node fault the router retries) and every lease closed, even when
      // the pass's outputs did not fit in the heap.
      results = Collections.nCopies(m, CompletableFuture.failedFuture(e));
    }
    for (int j = 0; j < m; j++) {
      Ready call = calls.get(j);
      results.get(j).whenComplete((out, err) -> call.computation().answer(call, out, err, start));
    }
  }

  /** Calls that will not be computed (their connection broke): closes their leases, answers none. */
  static void abandon(List<Ready> calls) {
    for (Ready call : calls) {
      call.lease().close();
    }
    calls.clear();
  }

  /** Runs one call's FFN on its own ({@link ExpertBackend#forward}) and answers it. */
  private void computeAlone(Ready call) {
    long start = System.nanoTime();
    CompletableFuture<float[]> result;
    try {
      result = node.backend().forward(id.layer(), id.expert(), call.lease().weights(), call.x(), call.rows());
    } catch (RuntimeException e) {
      result = CompletableFuture.failedFuture(e);
    }
    result.whenComplete((out, err) -> answer(call, out, err, start));
  }

  private void answer(Ready call, float[] out, Throwable err, long start) {
    ExpertReply.Builder reply = call.reply();
    ExpertReply done;
    try (ExpertWeightCache.Lease lease = call.lease()) {
      if (err != null) {
        done = reply.setNodeFault(true).setError("expert " + entityId + " failed: " + unwrap(err)).build();
      } else {
        double seconds = (System.nanoTime() - start) / 1e9;
        computeSeconds.observe(seconds);
        tokens.inc(call.rows());
        done = reply.setOutput(ActivationCodec.encode(out, call.rows(), weights.hiddenSize()))
            .setComputeSeconds(seconds)
            .setStaysWarm(lease.warm() && node.cache().holdsEveryExpert() && !node.backend().warmsOnHints())
            .build();
      }
    } catch (RuntimeException e) {
      done = reply.clearOutput().setNodeFault(true).setError("expert " + entityId + " failed: " + e).build();
    }
    call.answer().accept(done);
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

package io.moecluster.core.generate;

import io.moecluster.core.config.ModelConfig;
import io.moecluster.core.kernel.Kernels;
import io.moecluster.core.kernel.KernelsFactory;
import io.moecluster.core.model.ExpertExecutor;
import io.moecluster.core.model.ForwardPass;
import io.moecluster.core.model.LocalExperts;
import io.moecluster.core.model.MoeModel;
import io.moecluster.core.model.WeightPlacement;
import io.moecluster.core.tokenizer.Tokenizer;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.function.Consumer;
import java.util.function.LongConsumer;

/**
 * The single-process generator: a model, its tokenizer and an expert executor in one JVM. It is
 * the reference the cluster is checked against (same request, same tokens) and what
 * {@code moe generate} runs.
 */
public final class LocalGenerator implements AutoCloseable {
  private static final long PAGE = 4096;

  private final MoeModel model;
  private final Tokenizer tokenizer;
  private final ExpertExecutor experts;
  private final BatchStepper stepper;
  private final Set<Integer> eosIds;
  private final boolean ownsKernels;
  private volatile long pageSink;

  public LocalGenerator(MoeModel model, Tokenizer tokenizer, ExpertExecutor experts, boolean ownsKernels) {
    this.model = model;
    this.tokenizer = tokenizer;
    this.experts = experts;
    this.stepper = new BatchStepper(new ForwardPass(model, experts));
    this.ownsKernels = ownsKernels;
    this.eosIds = EosTokens.of(model.config(), tokenizer);
  }

  /** Loads the model in {@code dir} with kernels on {@code threads} threads (0: all cores). */
  public static LocalGenerator open(Path dir, int threads) {
    return open(dir, threads, WeightPlacement.AUTO);
  }

  /** {@link #open(Path, int)}, with the weights placed as {@code placement} says. */
  public static LocalGenerator open(Path dir, int threads, WeightPlacement placement) {
    Tokenizer tokenizer = Tokenizer.load(dir);
    Kernels kernels = KernelsFactory.create(threads);
    try {
      MoeModel model = MoeModel.load(dir, kernels, placement);
      if (tokenizer.vocabSize() > model.config().vocabSize()) {
        model.close();
        throw new IllegalArgumentException(
            dir + ": the tokenizer has " + tokenizer.vocabSize() + " tokens but the model's vocab_size is "
                + model.config().vocabSize());
      }
      return new LocalGenerator(model, tokenizer, model.experts(), true);
    } catch (RuntimeException e) {
      closeKernels(kernels);
      throw e;
    }
  }

  public ModelConfig config() {
    return model.config();
  }

  public Tokenizer tokenizer() {
    return tokenizer;
  }

  public MoeModel model() {
    return model;
  }

  public Set<Integer> eosTokenIds() {
    return eosIds;
  }

  /** Total bytes of the mapped checkpoint. */
  public long checkpointBytes() {
    return model.tensors().totalBytes();
  }

  /**
   * Makes the first token as fast as the next: copies every expert when the experts run on copies,
   * else reads one byte of every page of the checkpoint so that the first token does not pay for
   * page faults. Reports the bytes done so far (for a progress bar; the total is
   * {@link #checkpointBytes()}).
   */
  public void warmUp(LongConsumer bytesDone) {
    if (experts instanceof LocalExperts local && local.copies()) {
      // The dense weights were copied at load; the rest of the checkpoint is the experts.
      long dense = checkpointBytes() - local.expertBytes();
      bytesDone.accept(dense);
      local.loadAll(experts -> bytesDone.accept(dense + experts));
      return;
    }
    long done = 0;
    for (String name : model.tensors().names()) {
      MemorySegment seg = model.tensors().bytes(name);
      long sum = 0;
      for (long off = 0; off < seg.byteSize(); off += PAGE) {
        sum += seg.get(ValueLayout.JAVA_BYTE, off);
      }
      pageSink += sum; // a visible use, so the reads are not optimized away
      done += seg.byteSize();
      bytesDone.accept(done);
    }
  }

  /** Bytes of weights copied into this process's memory (0 when everything is read in place). */
  public long copiedBytes() {
    return model.copiedBytes();
  }

  /** Generates one sequence, streaming its tokens to {@code listener}. */
  public GenerationResult generate(GenerationRequest request, Consumer<TokenEvent> listener) {
    Sequence s = newSequence(request, listener);
    List<Sequence> running = List.of(s);
    while (!s.isFinished()) {
      stepper.step(running);
    }
    return s.result();
  }

  /** Generates several sequences together in one continuous batch; results in request order. */
  public List<GenerationResult> generateBatch(List<GenerationRequest> requests) {
    List<Sequence> all = new ArrayList<>();
    for (GenerationRequest r : requests) {
      all.add(newSequence(r, e -> {}));
    }
    List<Sequence> running = new ArrayList<>(all);
    while (!running.isEmpty()) {
      stepper.step(running);
      running.removeIf(Sequence::isFinished);
    }
    return all.stream().map(Sequence::result).toList();
  }

  private Sequence newSequence(GenerationRequest request, Consumer<TokenEvent> listener) {
    int[] ids = request.promptIds();
    int prompt = ids.length;
    for (int id : ids) {
      if (id < 0 || id >= model.config().vocabSize()) {
        throw new IllegalArgumentException(
            "prompt token id " + id + " is outside the vocabulary [0, " + model.config().vocabSize() + ")");
      }
    }
    for (int id : request.resumeIds()) {
      if (id < 0 || id >= model.config().vocabSize()) {
        throw new IllegalArgumentException(
            "resume_token_ids: id " + id + " is outside the vocabulary [0, " + model.config().vocabSize() + ")");
      }
    }
    return new Sequence(
        request, model.newKvCache(prompt + request.resumeIds().length + Math.min(request.maxTokens(), 256)), tokenizer, eosIds, listener);
  }

  @Override
  public void close() {
    experts.close();
    model.close();
    if (ownsKernels) {
      closeKernels(model.kernels());
    }
  }

  private static void closeKernels(Kernels kernels) {
    if (kernels instanceof AutoCloseable c) {
      try {
        c.close();
      } catch (Exception e) {
        throw new IllegalStateException(e);
      }
    }
  }
}

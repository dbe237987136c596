package io.moecluster.core.checkpoint;

import io.moecluster.core.config.ModelConfig;
import io.moecluster.core.config.ModelFamily;
import io.moecluster.core.config.QkNorm;
import io.moecluster.core.config.WeightNames;
import io.moecluster.core.safetensors.SafeTensorsWriter;
import io.moecluster.core.safetensors.SafeTensorsWriter.TensorSpec;
import io.moecluster.core.tensor.DType;
import io.moecluster.core.tokenizer.ByteLevelBpeTrainer;
import io.moecluster.core.tokenizer.TrainedTokenizer;
import io.moecluster.core.tokenizer.Tokenizer;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.regex.Pattern;
import java.util.stream.Stream;

/**
 * Writes a random model in the exact Hugging Face layout (config.json, safetensors with HF names
 * and {@code [out, in]} shapes, tokenizer.json, tokenizer_config.json), so every loader path is
 * exercised on checkpoints we can make in seconds. Values are a pure function of (seed, tensor
 * name): the same spec always gives the same bytes.
 */
public final class CheckpointWriter {
  private static final String CONFIG = "config.json";
  private static final String STAGE_PREFIX = ".moe-partial-";
  private static final Pattern WEIGHT_FILE =
      Pattern.compile("model\\.safetensors(\\.index\\.json)?|model-\\d+-of-\\d+\\.safetensors");

  private CheckpointWriter() {}

  /**
   * Writes the checkpoint into {@code out} (created if needed) and returns its config.
   *
   * <p>Everything is written into a staging directory inside {@code out} first and moved into
   * place only once complete, {@code config.json} last: a spec refused half-way (too many shards,
   * a bad tokenizer) leaves a checkpoint already in {@code out} as it was, and a write cut short
   * (a full disk, a killed process) leaves no {@code config.json}, so a directory that has one
   * holds a whole checkpoint. The staging directories of writers that died are removed by the
   * next write into the same directory.
   */
  public static ModelConfig write(CheckpointSpec spec, Path out) {
    Path stage = null;
    try {
      Files.createDirectories(out);
      removeAbandonedStages(out);
      stage = Files.createTempDirectory(out, STAGE_PREFIX + ProcessHandle.current().pid() + "-");
      int vocab = writeTokenizer(spec, stage);
      Tokenizer tokenizer = Tokenizer.load(stage);
      ModelConfig config = config(spec, vocab, tokenizer);
      SafeTensorsWriter.write(
          stage, tensors(config, spec.dtype()), spec.shards(), (t, values) -> fill(spec.seed(), t, values),
          Map.of("format", "pt"));
      Files.writeString(stage.resolve(CONFIG), config.toJson());
      publish(stage, out);
      return config;
    } catch (IOException e) {
      throw new UncheckedIOException("cannot write the checkpoint to " + out + ": " + e.getMessage(), e);
    } finally {
      if (stage != null) {
        deleteQuietly(stage);
      }
    }
  }

  /** Moves a complete staged checkpoint into {@code out}: config out first, in last. */
  private static void publish(Path stage, Path out) throws IOException {
    Files.deleteIfExists(out.resolve(CONFIG));
    List<Path> staged;
    try (Stream<Path> s = Files.list(stage)) {
      staged = s.filter(p -> !p.getFileName().toString().equals(CONFIG)).toList();
    }
    Set<String> names = new HashSet<>();
    staged.forEach(p -> names.add(p.getFileName().toString()));
    // Another checkpoint's weights left beside this one's (an index, or shards of another count)
    // would be read instead of, or along with, the new file.
    try (Stream<Path> s = Files.list(out)) {
      for (Path p : s.toList()) {
        String name = p.getFileName().toString();
        if (WEIGHT_FILE.matcher(name).matches() && !names.contains(name) && Files.isRegularFile(p)) {
          Files.delete(p);
        }
      }
    }
    for (Path p : staged) {
      Files.move(p, out.resolve(p.getFileName()), StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    }
    Files.move(stage.resolve(CONFIG), out.resolve(CONFIG), StandardCopyOption.REPLACE_EXISTING,
        StandardCopyOption.ATOMIC_MOVE);
  }

  /** Removes the staging directories in {@code out} whose writing process is gone. */
  private static void removeAbandonedStages(Path out) throws IOException {
    try (Stream<Path> s = Files.list(out)) {
      for (Path p : s.toList()) {
        String name = p.getFileName().toString();
        if (name.startsWith(STAGE_PREFIX) && Files.isDirectory(p) && !writerAlive(name)) {
          deleteQuietly(p);
        }
      }
    }
  }

  private static boolean writerAlive(String stageName) {
    String rest = stageName.substring(STAGE_PREFIX.length());
    int dash = rest.indexOf('-');
    try {
      long pid = Long.parseLong(dash < 0 ? rest : rest.substring(0, dash));
      return ProcessHandle.of(pid).map(ProcessHandle::isAlive).orElse(false);
    } catch (NumberFormatException e) {
      return false;
    }
  }

  private static void deleteQuietly(Path dir) {
    try (Stream<Path> s = Files.walk(dir)) {
      for (Path p : s.sorted(Comparator.reverseOrder()).toList()) {
        Files.deleteIfExists(p);
      }
    } catch (IOException | UncheckedIOException e) {
      // Best effort: what is left is a hidden directory the next write into out removes.
    }
  }

  private static int writeTokenizer(CheckpointSpec spec, Path out) throws IOException {
    if (spec.tokenizerDir() != null) {
      Path from = spec.tokenizerDir();
      if (!Files.isRegularFile(from.resolve("tokenizer.json"))) {
        throw new IllegalArgumentException("--tokenizer " + from + ": no tokenizer.json there");
      }
      for (String name : List.of("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")) {
        if (Files.isRegularFile(from.resolve(name))) {
          Files.copy(from.resolve(name), out.resolve(name), StandardCopyOption.REPLACE_EXISTING);
        }
      }
      return Tokenizer.load(out).vocabSize();
    }
    TrainedTokenizer trained = ByteLevelBpeTrainer.trainOnBundledCorpus(spec.preset().tokenizerVocab);
    Files.writeString(out.resolve("tokenizer.json"), trained.tokenizerJson());
    Files.writeString(out.resolve("tokenizer_config.json"), trained.tokenizerConfigJson());
    return trained.vocabSize();
  }

  static ModelConfig config(CheckpointSpec spec, int vocab, Tokenizer tokenizer) {
    Preset p = spec.preset();
    ModelFamily f = spec.family();
    int headDim = p.hiddenSize / p.heads;
    List<Integer> eos = new ArrayList<>(tokenizer.eosTokenIds());
    eos.sort(null);
    return new ModelConfig(
        f,
        vocab,
        p.hiddenSize,
        p.layers,
        p.heads,
        p.kvHeads,
        headDim,
        p.experts,
        p.topK,
        p.ffnSize,
        f == ModelFamily.QWEN2_MOE ? p.ffnSize : 0,
        f == ModelFamily.MIXTRAL || f == ModelFamily.QWEN3_MOE,
        switch (f) {
          case MIXTRAL, QWEN2_MOE -> QkNorm.NONE;
          case QWEN3_MOE -> QkNorm.PER_HEAD;
          case OLMOE -> QkNorm.FULL;
        },
        f == ModelFamily.QWEN2_MOE,
        1e-5f,
        f == ModelFamily.MIXTRAL ? 1_000_000.0 : 10_000.0,
        4096,
        false,
        tokenizer.bosTokenId().orElse(-1),
        eos,
        spec.dtype() == DType.BF16 ? "bfloat16" : "float32");
  }

  /** Every tensor of the checkpoint, in the order HF writes them. */
  static List<TensorSpec> tensors(ModelConfig c, DType dtype) {
    WeightNames n = c.weightNames();
    int h = c.hiddenSize();
    int q = c.numHeads() * c.headDim();
    int kv = c.numKvHeads() * c.headDim();
    int ffn = c.expertIntermediateSize();
    List<TensorSpec> specs = new ArrayList<>();
    specs.add(spec(n.embedTokens(), dtype, c.vocabSize(), h));
    for (int l = 0; l < c.numLayers(); l++) {
      specs.add(spec(n.attentionNorm(l), dtype, h));
      specs.add(spec(n.attention(l, 'q'), dtype, q, h));
      specs.add(spec(n.attention(l, 'k'), dtype, kv, h));
      specs.add(spec(n.attention(l, 'v'), dtype, kv, h));
      specs.add(spec(n.attention(l, 'o'), dtype, h, q));
      if (c.attentionBias()) {
        specs.add(spec(n.attentionBias(l, 'q'), dtype, q));
        specs.add(spec(n.attentionBias(l, 'k'), dtype, kv));
        specs.add(spec(n.attentionBias(l, 'v'), dtype, kv));
      }
      switch (c.qkNorm()) {
        case PER_HEAD -> {
          specs.add(spec(n.qkNorm(l, 'q'), dtype, c.headDim()));
          specs.add(spec(n.qkNorm(l, 'k'), dtype, c.headDim()));
        }
        case FULL -> {
          specs.add(spec(n.qkNorm(l, 'q'), dtype, q));
          specs.add(spec(n.qkNorm(l, 'k'), dtype, kv));
        }
        case NONE -> {}
      }
      specs.add(spec(n.ffnNorm(l), dtype, h));
      specs.add(spec(n.router(l), dtype, c.numExperts(), h));
      for (int e = 0; e < c.numExperts(); e++) {
        specs.add(spec(n.expertGate(l, e), dtype, ffn, h));
        specs.add(spec(n.expertDown(l, e), dtype, h, ffn));
        specs.add(spec(n.expertUp(l, e), dtype, ffn, h));
      }
      if (c.hasSharedExpert()) {
        int s = c.sharedExpertIntermediateSize();
        specs.add(spec(n.sharedExpert(l, "gate"), dtype, s, h));
        specs.add(spec(n.sharedExpert(l, "up"), dtype, s, h));
        specs.add(spec(n.sharedExpert(l, "down"), dtype, h, s));
        specs.add(spec(n.sharedExpertGate(l), dtype, 1, h));
      }
    }
    specs.add(spec(n.finalNorm(), dtype, h));
    if (!c.tieWordEmbeddings()) {
      specs.add(spec(n.lmHead(), dtype, c.vocabSize(), h));
    }
    return specs;
  }

  private static TensorSpec spec(String name, DType dtype, long... shape) {
    return new TensorSpec(name, dtype, shape);
  }

  /**
   * Uniform values with the spread of a trained model's: norms near 1, embeddings of unit scale,
   * projections scaled by 1/sqrt(fan-in) so activations neither vanish nor explode through the
   * layers, and a wider router so the experts are chosen unevenly, as in real checkpoints.
   */
  static void fill(long seed, TensorSpec t, float[] values) {
    SplittableRandom random = new SplittableRandom(seed ^ (t.name().hashCode() * 0x9E3779B97F4A7C15L));
    String name = t.name();
    long[] shape = t.shape();
    float center = 0f;
    float std;
    if (name.endsWith("norm.weight")) {
      center = 1f;
      std = 0.1f;
    } else if (name.endsWith(".bias")) {
      std = 0.02f;
    } else if (name.equals("model.embed_tokens.weight")) {
      std = 1f;
    } else if (name.endsWith("gate.weight") && !name.contains("experts") && !name.contains("shared_expert.")) {
      std = 3f / (float) Math.sqrt(shape[1]); // router or shared-expert gate
    } else {
      std = 1f / (float) Math.sqrt(shape[shape.length - 1]);
    }
    float halfWidth = std * (float) Math.sqrt(3.0); // uniform(-a, a) has std a / sqrt(3)
    for (int i = 0; i < values.length; i++) {
      values[i] = center + (float) ((random.nextDouble() * 2 - 1) * halfWidth);
    }
  }
}

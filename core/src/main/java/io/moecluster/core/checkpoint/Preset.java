package io.moecluster.core.checkpoint;

import java.util.Locale;

/**
 * Sizes of the random checkpoints for tests, demos and benchmarks.
 *
 * @param tokenizerVocab the vocabulary the bundled tokenizer is trained to (a copied tokenizer
 *     brings its own)
 */
public enum Preset {
  /** For unit tests: runs in milliseconds. */
  TINY(64, 2, 4, 2, 128, 4, 2, 512),
  /** For cluster tests and demos: 8 experts, about 70 M parameters. */
  SMALL(512, 4, 8, 2, 1408, 8, 2, 2048),
  /** For benchmarks: expert shapes large enough that decode is bound by memory bandwidth. */
  BENCH(1024, 8, 8, 2, 2816, 16, 4, 4096);

  public final int hiddenSize;
  public final int layers;
  public final int experts;
  public final int topK;
  public final int ffnSize;
  public final int heads;
  public final int kvHeads;
  public final int tokenizerVocab;

  Preset(int hiddenSize, int layers, int experts, int topK, int ffnSize, int heads, int kvHeads, int tokenizerVocab) {
    this.hiddenSize = hiddenSize;
    this.layers = layers;
    this.experts = experts;
    this.topK = topK;
    this.ffnSize = ffnSize;
    this.heads = heads;
    this.kvHeads = kvHeads;
    this.tokenizerVocab = tokenizerVocab;
  }

  public String cliName() {
    return name().toLowerCase(Locale.ROOT);
  }
}

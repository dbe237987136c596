package io.moecluster.core.tokenizer;

/**
 * The files {@link ByteLevelBpeTrainer} produces; load them with {@link Tokenizer#fromJson}.
 *
 * @param vocabSize the number of ids, special tokens included
 */
public record TrainedTokenizer(String tokenizerJson, String tokenizerConfigJson, int vocabSize) {}

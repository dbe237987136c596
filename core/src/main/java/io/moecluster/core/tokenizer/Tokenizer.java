package io.moecluster.core.tokenizer;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.OptionalInt;
import java.util.Set;

/**
 * A Hugging Face fast tokenizer (tokenizer.json) implemented in Java: the added-token splitter,
 * normalizer, pre-tokenizer, BPE model, post-processor and decoder of SentencePiece-style (Llama,
 * Mistral) and byte-level (GPT-2, Qwen) BPE tokenizers. Immutable and thread-safe.
 */
public final class Tokenizer {
  private static final ObjectMapper MAPPER = new ObjectMapper();

  private final String source;
  private final BpeModel model;
  private final Normalizer normalizer;
  private final PreTokenizer preTokenizer;
  private final AddedTokenSplitter addedTokens;
  private final PostProcessor postProcessor;
  private final TokenDecoder decoder;
  private final String[] idToToken;
  private final boolean[] special;
  private final Map<String, Integer> tokenToId;
  private final OptionalInt bosTokenId;
  private final Set<Integer> eosTokenIds;
  private final ChatTemplate chatTemplate;

  /**
   * Ids index arrays as large as the largest id: a negative one, or one far past the number of
   * tokens (a hostile or corrupt file), would fail there with an array error or exhaust memory.
   * Real vocabularies leave a few unused ids (padding to a multiple of 64 or 128), not millions.
   */
  private static int checkId(int id, String token, int tokens, String source) {
    long limit = (long) tokens + (1 << 16);
    if (id < 0 || id > limit) {
      String shown = token.length() > 40 ? token.substring(0, 40) + "..." : token;
      throw new TokenizerException(source + ": token '" + shown + "' has id " + id + ", outside [0, " + limit
          + "] for " + tokens + " tokens");
    }
    return id;
  }

  private Tokenizer(String source, JsonNode root, TokenizerConfig config) {
    this.source = source;
    this.model = BpeModel.fromJson(JsonFields.required(root, "model", source, "the file"), source);
    this.normalizer = Normalizer.fromJson(root.get("normalizer"), source);
    this.preTokenizer = PreTokenizer.fromJson(root.get("pre_tokenizer"), source);
    this.decoder = TokenDecoder.fromJson(root.get("decoder"), source);

    List<AddedToken> added = parseAddedTokens(root.get("added_tokens"), source);
    this.addedTokens = new AddedTokenSplitter(added);
    this.tokenToId = new HashMap<>(model.vocab());
    int maxId = -1;
    int tokens = model.vocab().size() + added.size();
    for (var e : model.vocab().entrySet()) {
      maxId = Math.max(maxId, checkId(e.getValue(), e.getKey(), tokens, source));
    }
    for (AddedToken token : added) {
      maxId = Math.max(maxId, checkId(token.id(), token.content(), tokens, source));
    }
    this.idToToken = new String[maxId + 1];
    this.special = new boolean[maxId + 1];
    model.vocab().forEach((token, id) -> idToToken[id] = token);
    for (AddedToken token : added) {
      idToToken[token.id()] = token.content();
      special[token.id()] = token.special();
      tokenToId.put(token.content(), token.id());
    }

    this.postProcessor = PostProcessor.build(root.get("post_processor"), config, tokenToId, source);
    OptionalInt bos = tokenId(config.bosToken());
    this.bosTokenId =
        bos.isPresent() || postProcessor.leadingToken() < 0
            ? bos
            : OptionalInt.of(postProcessor.leadingToken());
    OptionalInt eos = tokenId(config.eosToken());
    this.eosTokenIds = eos.isPresent() ? Set.of(eos.getAsInt()) : Set.of();
    this.chatTemplate =
        config.chatTemplate() == null
            ? null
            : new ChatTemplate(config.chatTemplate(), config.bosToken(), config.eosToken());
  }

  /** Reads {@code modelDir/tokenizer.json}, and {@code tokenizer_config.json} when present. */
  public static Tokenizer load(Path modelDir) {
    Path tokenizerFile = modelDir.resolve("tokenizer.json");
    String tokenizerJson;
    try {
      tokenizerJson = Files.readString(tokenizerFile, StandardCharsets.UTF_8);
    } catch (NoSuchFileException e) {
      throw new TokenizerException(
          tokenizerFile
              + " does not exist; download tokenizer.json from the model's Hugging Face"
              + " repository into "
              + modelDir,
          e);
    } catch (IOException e) {
      throw new TokenizerException("Cannot read " + tokenizerFile + ": " + e.getMessage(), e);
    }
    Path configFile = modelDir.resolve("tokenizer_config.json");
    String configJson = readIfPresent(configFile);
    // Newer transformers save the template in a file of its own rather than in tokenizer_config.json.
    String template = readIfPresent(modelDir.resolve("chat_template.jinja"));
    return parse(tokenizerJson, tokenizerFile.toString(), configJson, configFile.toString(), template);
  }

  /** The text of an optional file of the model directory, or null when there is none. */
  private static String readIfPresent(Path file) {
    if (!Files.exists(file)) {
      return null;
    }
    try {
      return Files.readString(file, StandardCharsets.UTF_8);
    } catch (IOException e) {
      throw new TokenizerException("Cannot read " + file + ": " + e.getMessage(), e);
    }
  }

  /** Builds a tokenizer from the texts of tokenizer.json and (optionally) tokenizer_config.json. */
  public static Tokenizer fromJson(String tokenizerJson, String tokenizerConfigJsonOrNull) {
    return parse(
        tokenizerJson, "tokenizer.json", tokenizerConfigJsonOrNull, "tokenizer_config.json", null);
  }

  /** @param templateOrNull the text of chat_template.jinja, used where tokenizer_config.json has none */
  private static Tokenizer parse(
      String tokenizerJson, String source, String configJson, String configSource, String templateOrNull) {
    if (tokenizerJson == null) {
      throw new TokenizerException(source + ": no content was given; pass the file's text");
    }
    JsonNode root;
    try {
      root = MAPPER.readTree(tokenizerJson);
    } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
      throw new TokenizerException(
          source
              + " is not valid JSON ("
              + e.getOriginalMessage()
              + "); re-download tokenizer.json from the model's repository",
          e);
    }
    if (root == null || !root.isObject()) {
      throw new TokenizerException(
          source + " must contain a JSON object; re-download tokenizer.json");
    }
    TokenizerConfig config = TokenizerConfig.parse(configJson, MAPPER, configSource);
    if (config.chatTemplate() == null && templateOrNull != null) {
      config = config.withChatTemplate(templateOrNull);
    }
    return new Tokenizer(source, root, config);
  }

  private static List<AddedToken> parseAddedTokens(JsonNode node, String source) {
    if (node == null || node.isNull()) {
      return List.of();
    }
    List<AddedToken> tokens = new ArrayList<>();
    for (JsonNode token : node) {
      tokens.add(
          new AddedToken(
              JsonFields.required(token, "id", source, "an added_tokens entry").asInt(),
              JsonFields.required(token, "content", source, "an added_tokens entry").asText(),
              JsonFields.bool(token, "special", false),
              JsonFields.bool(token, "lstrip", false),
              JsonFields.bool(token, "rstrip", false),
              JsonFields.bool(token, "single_word", false)));
    }
    return tokens;
  }

  /** Encodes with the special tokens the tokenizer adds by default (Llama: BOS). */
  public int[] encode(String text) {
    return encode(text, true);
  }

  public int[] encode(String text, boolean addSpecialTokens) {
    IntArrayBuilder ids = new IntArrayBuilder(text.length() / 3 + 4);
    for (AddedTokenSplitter.Segment segment : addedTokens.split(text)) {
      if (segment.isAddedToken()) {
        ids.add(segment.tokenId());
        continue;
      }
      String normalized = normalizer.normalize(segment.text());
      for (String word : preTokenizer.split(normalized, segment.start() == 0)) {
        model.tokenize(word, ids);
      }
    }
    int[] encoded = ids.toArray();
    return addSpecialTokens ? postProcessor.apply(encoded) : encoded;
  }

  /** Decodes keeping special tokens, like HF's {@code decode(ids, skip_special_tokens=False)}. */
  public String decode(int[] ids) {
    return decode(ids, false);
  }

  public String decode(int[] ids, boolean skipSpecialTokens) {
    StreamingDecoder stream = streamingDecoder(skipSpecialTokens);
    StringBuilder text = new StringBuilder();
    for (int id : ids) {
      text.append(stream.push(id));
    }
    return text.append(stream.flush()).toString();
  }

  public StreamingDecoder streamingDecoder(boolean skipSpecialTokens) {
    return new StreamingDecoder(this, decoder, skipSpecialTokens);
  }

  /** One more than the largest id of the model vocabulary and the added tokens. */
  public int vocabSize() {
    return idToToken.length;
  }

  public OptionalInt bosTokenId() {
    return bosTokenId;
  }

  /** The end-of-sequence ids named by tokenizer_config.json; empty when it names none. */
  public Set<Integer> eosTokenIds() {
    return eosTokenIds;
  }

  public OptionalInt tokenId(String token) {
    Integer id = token == null ? null : tokenToId.get(token);
    return id == null ? OptionalInt.empty() : OptionalInt.of(id);
  }

  /** The raw vocabulary string of an id, e.g. "▁Hello" or "&lt;0x0A&gt;". */
  public String token(int id) {
    String token = id >= 0 && id < idToToken.length ? idToToken[id] : null;
    if (token == null) {
      throw new TokenizerException(
          "Token id "
              + id
              + " is not in the vocabulary of "
              + source
              + " (ids 0.."
              + (idToToken.length - 1)
              + "); the ids were produced by a different tokenizer or model");
    }
    return token;
  }

  public boolean isSpecial(int id) {
    return id >= 0 && id < special.length && special[id];
  }

  public Optional<ChatTemplate> chatTemplate() {
    return Optional.ofNullable(chatTemplate);
  }
}

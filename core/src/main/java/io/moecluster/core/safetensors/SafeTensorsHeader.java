package io.moecluster.core.safetensors;

import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.moecluster.core.tensor.DType;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.stream.Collectors;

/**
 * The parsed and validated header of one safetensors file. Everything the header claims is checked
 * against the file before any tensor is handed out, so later reads can never run past the mapping.
 */
record SafeTensorsHeader(Map<String, String> metadata, List<TensorInfo> tensors, long dataStart) {

  /** Real headers are a few hundred KB; anything past this is a corrupt length, not a header. */
  static final long MAX_HEADER_BYTES = 100L * 1024 * 1024;

  static final ObjectMapper JSON =
      new ObjectMapper().enable(JsonParser.Feature.STRICT_DUPLICATE_DETECTION);

  private static final ValueLayout.OfLong U64_LE =
      ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

  static final String SUPPORTED =
      Arrays.stream(DType.values()).map(DType::safetensorsName).collect(Collectors.joining(", "));

  /** Parses the header of {@code file}, whose whole content is mapped at {@code mapped}. */
  static SafeTensorsHeader parse(Path file, MemorySegment mapped) {
    long fileSize = mapped.byteSize();
    if (fileSize < 8) {
      throw new SafeTensorsException(
          file
              + ": not a safetensors file: "
              + fileSize
              + " bytes, shorter than the 8-byte header length");
    }
    long headerLength = mapped.get(U64_LE, 0);
    // Read as unsigned: a negative long is a u64 above 2^63, which is certainly absurd too.
    if (headerLength < 0 || headerLength > MAX_HEADER_BYTES) {
      throw new SafeTensorsException(
          file
              + ": header length "
              + Long.toUnsignedString(headerLength)
              + " is absurd (limit "
              + MAX_HEADER_BYTES
              + " bytes); not a safetensors file or corrupt");
    }
    if (headerLength > fileSize - 8) {
      throw new SafeTensorsException(
          file
              + ": header length "
              + headerLength
              + " is larger than the file ("
              + fileSize
              + " bytes); truncated or not a safetensors file");
    }
    byte[] headerBytes = mapped.asSlice(8, headerLength).toArray(ValueLayout.JAVA_BYTE);
    JsonNode root;
    try {
      root = JSON.readTree(headerBytes);
    } catch (JsonProcessingException e) {
      throw new SafeTensorsException(
          file + ": header is not valid JSON: " + e.getOriginalMessage(), e);
    } catch (IOException e) {
      throw new SafeTensorsException(file + ": cannot parse header: " + e.getMessage(), e);
    }
    if (root == null || !root.isObject()) {
      throw new SafeTensorsException(
          file
              + ": header is not a JSON object but "
              + (root == null ? "empty" : root.getNodeType().toString().toLowerCase(Locale.ROOT)));
    }
    long dataStart = 8 + headerLength;
    long dataSize = fileSize - dataStart;

    Map<String, String> metadata = new LinkedHashMap<>();
    List<TensorInfo> tensors = new ArrayList<>();
    for (Map.Entry<String, JsonNode> e : root.properties()) {
      if (e.getKey().equals("__metadata__")) {
        metadata = parseMetadata(file, e.getValue());
      } else {
        tensors.add(parseTensor(file, e.getKey(), e.getValue(), dataStart, dataSize));
      }
    }
    checkNoOverlap(file, tensors, dataStart);
    return new SafeTensorsHeader(Map.copyOf(metadata), List.copyOf(tensors), dataStart);
  }

  private static Map<String, String> parseMetadata(Path file, JsonNode node) {
    if (!(node instanceof ObjectNode obj)) {
      throw new SafeTensorsException(file + ": \"__metadata__\" must be an object of strings");
    }
    Map<String, String> metadata = new LinkedHashMap<>();
    for (Map.Entry<String, JsonNode> e : obj.properties()) {
      if (!e.getValue().isTextual()) {
        throw new SafeTensorsException(
            file
                + ": \"__metadata__\" value '"
                + e.getKey()
                + "' must be a string, not "
                + e.getValue());
      }
      metadata.put(e.getKey(), e.getValue().textValue());
    }
    return metadata;
  }

  private static TensorInfo parseTensor(
      Path file, String name, JsonNode node, long dataStart, long dataSize) {
    String where = file + ": tensor '" + name + "'";
    if (!node.isObject()) {
      throw new SafeTensorsException(where + ": entry must be an object, not " + node);
    }
    JsonNode dtypeNode = node.get("dtype");
    JsonNode shapeNode = node.get("shape");
    JsonNode offsetsNode = node.get("data_offsets");
    if (dtypeNode == null || shapeNode == null || offsetsNode == null) {
      throw new SafeTensorsException(
          where + ": entry needs \"dtype\", \"shape\" and \"data_offsets\", got " + node);
    }
    if (!dtypeNode.isTextual()) {
      throw new SafeTensorsException(where + ": \"dtype\" must be a string, not " + dtypeNode);
    }
    DType dtype = dtypeOf(dtypeNode.textValue());
    if (dtype == null) {
      throw new SafeTensorsException(
          where
              + ": unsupported dtype "
              + dtypeNode.textValue()
              + " (supported: "
              + SUPPORTED
              + ")");
    }
    long[] shape = longs(where, "shape", shapeNode);
    for (long d : shape) {
      if (d < 0) {
        throw new SafeTensorsException(
            where + ": negative dimension in shape " + Shapes.format(shape));
      }
    }
    long[] offsets = longs(where, "data_offsets", offsetsNode);
    if (offsets.length != 2) {
      throw new SafeTensorsException(
          where + ": \"data_offsets\" must be [begin, end], not " + offsetsNode);
    }
    long begin = offsets[0];
    long end = offsets[1];
    if (begin < 0 || begin > end) {
      throw new SafeTensorsException(
          where
              + ": bad data_offsets ["
              + begin
              + ", "
              + end
              + "] ("
              + (begin < 0 ? "negative begin" : "begin > end")
              + ")");
    }
    if (end > dataSize) {
      throw new SafeTensorsException(
          where
              + ": data_offsets end "
              + end
              + " is past the end of the data section ("
              + dataSize
              + " bytes); the file is truncated");
    }
    long expectedBytes;
    try {
      expectedBytes = Math.multiplyExact(Shapes.elementCount(shape), dtype.byteSize());
    } catch (ArithmeticException e) {
      throw new SafeTensorsException(where + ": shape " + Shapes.format(shape) + " overflows", e);
    }
    if (end - begin != expectedBytes) {
      throw new SafeTensorsException(
          where
              + ": data_offsets ["
              + begin
              + ", "
              + end
              + "] span "
              + (end - begin)
              + " bytes but "
              + dtype
              + Shapes.format(shape)
              + " needs "
              + expectedBytes
              + "; the header is inconsistent");
    }
    return new TensorInfo(name, dtype, shape, file, dataStart + begin, end - begin);
  }

  /** Only the exact safetensors spellings; {@link DType#parse} also takes CLI aliases. */
  private static DType dtypeOf(String name) {
    for (DType d : DType.values()) {
      if (d.safetensorsName().equals(name)) {
        return d;
      }
    }
    return null;
  }

  private static long[] longs(String where, String field, JsonNode node) {
    if (!node.isArray()) {
      throw new SafeTensorsException(
          where + ": \"" + field + "\" must be an array of integers, not " + node);
    }
    long[] out = new long[node.size()];
    for (int i = 0; i < out.length; i++) {
      JsonNode v = node.get(i);
      if (!v.isIntegralNumber() || !v.canConvertToLong()) {
        throw new SafeTensorsException(
            where + ": \"" + field + "\" must be an array of integers, not " + node);
      }
      out[i] = v.longValue();
    }
    return out;
  }

  /** Zero-byte tensors take no room, so they cannot overlap anything. */
  private static void checkNoOverlap(Path file, List<TensorInfo> tensors, long dataStart) {
    List<TensorInfo> sorted =
        tensors.stream()
            .filter(t -> t.byteSize() > 0)
            .sorted(Comparator.comparingLong(TensorInfo::fileOffset))
            .toList();
    for (int i = 1; i < sorted.size(); i++) {
      TensorInfo prev = sorted.get(i - 1);
      TensorInfo cur = sorted.get(i);
      if (cur.fileOffset() < prev.fileOffset() + prev.byteSize()) {
        throw new SafeTensorsException(
            file
                + ": tensors '"
                + prev.name()
                + "' (data_offsets ["
                + (prev.fileOffset() - dataStart)
                + ", "
                + (prev.fileOffset() + prev.byteSize() - dataStart)
                + "]) and '"
                + cur.name()
                + "' (data_offsets ["
                + (cur.fileOffset() - dataStart)
                + ", "
                + (cur.fileOffset() + cur.byteSize() - dataStart)
                + "]) overlap");
      }
    }
  }
}

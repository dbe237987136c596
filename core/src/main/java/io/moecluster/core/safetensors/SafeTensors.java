package io.moecluster.core.safetensors;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import io.moecluster.core.tensor.DType;
import io.moecluster.core.tensor.Matrix;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Comparator;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A memory-mapped safetensors checkpoint: one file, or the shards of a Hugging Face model
 * directory. Opening validates every header (see {@link SafeTensorsHeader}); tensors are then
 * served as read-only views into the mapping, so loading a model copies nothing.
 *
 * <p>All files are mapped in one shared arena: views may be used from any thread, and {@link
 * #close()} unmaps them all at once, after which any access (through this object or through a view
 * obtained earlier) fails with {@link IllegalStateException} instead of crashing the JVM.
 */
public final class SafeTensors implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(SafeTensors.class);

  static final String INDEX_FILE = "model.safetensors.index.json";
  static final String SINGLE_FILE = "model.safetensors";

  private final Path source;
  private final Arena arena;
  private final List<Path> files;
  private final Map<Path, MemorySegment> mappings; // the files' mappings: residency and page-in
  // The same bytes as plain native segments, which every tensor view is cut from. The kernels then
  // see one segment class whether an expert runs from the mapping or from a warm copy in the
  // weight cache: C2 compiles the Vector API loads for the class it has seen, and a second class
  // deoptimises them (a 1 ms expert product took 10-35 ms, on a busy node 450-780 ms, until
  // recompiled; that was the stall after a node loss, when survivors first ran the lost experts
  // from the mapping).
  private final Map<Path, MemorySegment> views;
  private final Map<String, TensorInfo> tensors; // sorted by name
  private final long totalBytes;

  private SafeTensors(
      Path source,
      Arena arena,
      Map<Path, MemorySegment> mappings,
      Map<String, TensorInfo> tensors) {
    this.source = source;
    this.arena = arena;
    this.files = List.copyOf(mappings.keySet());
    this.mappings = Map.copyOf(mappings);
    Map<Path, MemorySegment> views = new LinkedHashMap<>();
    mappings.forEach((path, mapped) ->
        views.put(path, MemorySegment.ofAddress(mapped.address()).reinterpret(mapped.byteSize(), arena, null)));
    this.views = Map.copyOf(views);
    this.tensors = Collections.unmodifiableMap(new TreeMap<>(tensors));
    this.totalBytes = mappings.values().stream().mapToLong(MemorySegment::byteSize).sum();
  }

  /**
   * Opens {@code dirOrFile}: a .safetensors file, or a model directory holding {@code
   * model.safetensors.index.json} (sharded; its {@code weight_map} names the shards) or {@code
   * model.safetensors}, else exactly the {@code *.safetensors} files there.
   *
   * @throws SafeTensorsException if anything is missing, unreadable or malformed
   */
  public static SafeTensors open(Path dirOrFile) {
    Path source = dirOrFile.toAbsolutePath().normalize();
    if (Files.isDirectory(source)) {
      Path index = source.resolve(INDEX_FILE);
      if (Files.isRegularFile(index)) {
        return openSharded(source, index);
      }
      Path single = source.resolve(SINGLE_FILE);
      if (Files.isRegularFile(single)) {
        return openFiles(source, List.of(single), Map.of());
      }
      List<Path> found;
      try (Stream<Path> s = Files.list(source)) {
        found =
            s.filter(p -> p.getFileName().toString().endsWith(".safetensors"))
                .filter(Files::isRegularFile)
                .sorted()
                .toList();
      } catch (IOException e) {
        throw new SafeTensorsException(source + ": cannot list directory: " + e.getMessage(), e);
      }
      if (found.isEmpty()) {
        throw new SafeTensorsException(
            source
                + ": no safetensors checkpoint here (expected "
                + INDEX_FILE
                + ", "
                + SINGLE_FILE
                + " or *.safetensors files)");
      }
      return openFiles(source, found, Map.of());
    }
    if (Files.isRegularFile(source)) {
      return openFiles(source, List.of(source), Map.of());
    }
    throw new SafeTensorsException(source + ": no such file or directory");
  }

  private static SafeTensors openSharded(Path dir, Path index) {
    JsonNode root;
    try {
      root = SafeTensorsHeader.JSON.readTree(index.toFile());
    } catch (JsonProcessingException e) {
      throw new SafeTensorsException(index + ": not valid JSON: " + e.getOriginalMessage(), e);
    } catch (IOException e) {
      throw new SafeTensorsException(index + ": cannot read: " + e.getMessage(), e);
    }
    JsonNode weightMap = root == null ? null : root.get("weight_map");
    if (weightMap == null || !weightMap.isObject()) {
      throw new SafeTensorsException(
          index + ": missing \"weight_map\" object (tensor name -> shard file)");
    }
    // Shards in order of first appearance would depend on JSON order; sort for a stable files().
    Map<String, Path> expected = new HashMap<>();
    Set<Path> shards = new TreeSet<>();
    for (Map.Entry<String, JsonNode> e : weightMap.properties()) {
      if (!e.getValue().isTextual()) {
        throw new SafeTensorsException(
            index
                + ": weight_map entry for tensor '"
                + e.getKey()
                + "' must be a file name, not "
                + e.getValue());
      }
      Path shard = dir.resolve(e.getValue().textValue()).normalize();
      if (!shard.startsWith(dir)) {
        throw new SafeTensorsException(
            index
                + ": weight_map entry for tensor '"
                + e.getKey()
                + "' points outside the model directory: "
                + e.getValue().textValue());
      }
      if (!Files.isRegularFile(shard)) {
        throw new SafeTensorsException(
            index + ": shard " + shard + " (holding tensor '" + e.getKey() + "') is missing");
      }
      expected.put(e.getKey(), shard);
      shards.add(shard);
    }
    if (shards.isEmpty()) {
      throw new SafeTensorsException(index + ": \"weight_map\" is empty");
    }
    return openFiles(dir, List.copyOf(shards), expected);
  }

  /**
   * Maps and validates {@code paths}; {@code expected} (from an index) maps tensor names to the
   * shard that must hold them.
   */
  private static SafeTensors openFiles(Path source, List<Path> paths, Map<String, Path> expected) {
    Arena arena = Arena.ofShared();
    try {
      Map<Path, MemorySegment> mappings = new LinkedHashMap<>();
      Map<String, TensorInfo> tensors = new HashMap<>();
      for (Path path : paths) {
        MemorySegment mapped = map(path, arena);
        mappings.put(path, mapped);
        for (TensorInfo t : SafeTensorsHeader.parse(path, mapped).tensors()) {
          TensorInfo other = tensors.putIfAbsent(t.name(), t);
          if (other != null) {
            throw new SafeTensorsException(
                source + ": tensor '" + t.name() + "' is in both " + other.file() + " and " + path);
          }
        }
      }
      for (Map.Entry<String, Path> e : expected.entrySet()) {
        TensorInfo t = tensors.get(e.getKey());
        if (t == null || !t.file().equals(e.getValue())) {
          throw new SafeTensorsException(
              source.resolve(INDEX_FILE)
                  + ": tensor '"
                  + e.getKey()
                  + "' is listed in shard "
                  + e.getValue()
                  + " but that file does not contain it"
                  + (t == null ? "" : " (it is in " + t.file() + ")"));
        }
      }
      SafeTensors st = new SafeTensors(source, arena, mappings, tensors);
      log.debug(
          "Opened {}: {} tensors in {} file(s), {} bytes",
          source,
          tensors.size(),
          mappings.size(),
          st.totalBytes);
      return st;
    } catch (RuntimeException e) {
      arena.close();
      throw e;
    }
  }

  private static MemorySegment map(Path path, Arena arena) {
    try (FileChannel ch = FileChannel.open(path, StandardOpenOption.READ)) {
      long size = ch.size();
      if (size < 8) {
        // Checked before mapping: mapping an empty file is pointless and the header check would
        // say the same, but this names the real problem.
        throw new SafeTensorsException(
            path
                + ": not a safetensors file: "
                + size
                + " bytes, shorter than the 8-byte header length");
      }
      return ch.map(FileChannel.MapMode.READ_ONLY, 0, size, arena);
    } catch (IOException e) {
      throw new SafeTensorsException(path + ": cannot map: " + e.getMessage(), e);
    }
  }

  /** All tensor names, sorted. */
  public Set<String> names() {
    ensureOpen();
    return tensors.keySet();
  }

  public boolean contains(String name) {
    ensureOpen();
    return tensors.containsKey(name);
  }

  /**
   * Where tensor {@code name} lives.
   *
   * @throws SafeTensorsException if there is no such tensor
   */
  public TensorInfo info(String name) {
    ensureOpen();
    TensorInfo t = tensors.get(name);
    if (t == null) {
      throw new SafeTensorsException(
          "tensor '"
              + name
              + "' not found in "
              + source
              + " ("
              + tensors.size()
              + " tensors; e.g. "
              + similarNames(name)
              + ")");
    }
    return t;
  }

  /** The dtypes of the checkpoint's tensors. */
  public Set<DType> dtypes() {
    ensureOpen();
    Set<DType> dtypes = java.util.EnumSet.noneOf(DType.class);
    tensors.values().forEach(t -> dtypes.add(t.dtype()));
    return dtypes;
  }

  /** A read-only view of the tensor's raw little-endian bytes in the mapping; never a copy. */
  public MemorySegment bytes(String name) {
    TensorInfo t = info(name);
    return views.get(t.file()).asSlice(t.fileOffset(), t.byteSize()).asReadOnly();
  }

  /**
   * Asks the OS to read the pages under {@code view} (a segment of {@link #bytes} or a matrix of
   * this checkpoint) unless they are all resident: madvise WILLNEED and a touch of each page. One
   * residency check (mincore) when they are. Returns true when some were not resident; false too
   * for a segment outside this checkpoint's files.
   */
  public boolean pageIn(MemorySegment view) {
    MemorySegment mapped = mappedSlice(view);
    if (mapped == null || mapped.isLoaded()) {
      return false;
    }
    mapped.load();
    return true;
  }

  /** Whether every page under {@code view} is resident (false outside this checkpoint's files). */
  public boolean isResident(MemorySegment view) {
    MemorySegment mapped = mappedSlice(view);
    return mapped != null && mapped.isLoaded();
  }

  private MemorySegment mappedSlice(MemorySegment view) {
    ensureOpen();
    for (MemorySegment mapped : mappings.values()) {
      long offset = view.address() - mapped.address();
      if (offset >= 0 && offset + view.byteSize() <= mapped.byteSize()) {
        return mapped.asSlice(offset, view.byteSize());
      }
    }
    return null;
  }

  /**
   * A 2-D {@code [rows, cols]} weight, checking dtype and shape. F32 and BF16 tensors are served as
   * views into the mapping. F16 tensors are widened into a new F32 segment (the kernels only take
   * F32 and BF16); that copy is off-heap, 64-byte aligned, freed by the garbage collector, and
   * outlives {@link #close()}.
   *
   * @throws SafeTensorsException if the tensor is missing or is not {@code [rows, cols]}
   */
  public Matrix matrix(String name, int rows, int cols) {
    TensorInfo t = info(name);
    long[] shape = t.shape();
    if (shape.length != 2) {
      throw new SafeTensorsException(
          t.file()
              + ": tensor '"
              + name
              + "' has rank "
              + shape.length
              + " shape "
              + Shapes.format(shape)
              + ", expected a matrix ["
              + rows
              + ", "
              + cols
              + "]");
    }
    if (shape[0] != rows || shape[1] != cols) {
      throw new SafeTensorsException(
          t.file()
              + ": tensor '"
              + name
              + "' has shape "
              + Shapes.format(shape)
              + ", expected ["
              + rows
              + ", "
              + cols
              + "]");
    }
    MemorySegment data = bytes(name);
    return switch (t.dtype()) {
      case F32, BF16 -> new Matrix(name, t.dtype(), rows, cols, data);
      case F16 -> {
        long count = t.elementCount();
        MemorySegment wide = Arena.ofAuto().allocate(count * Float.BYTES, 64);
        Floats.widenF16(data, wide, count);
        yield new Matrix(name, DType.F32, rows, cols, wide);
      }
    };
  }

  /**
   * The tensor converted to a new {@code float[]} from any supported dtype.
   *
   * @throws SafeTensorsException if the tensor is missing, its shape is not {@code expectedShape},
   *     or it has too many elements for an array
   */
  public float[] floats(String name, long... expectedShape) {
    Objects.requireNonNull(expectedShape, "expectedShape");
    TensorInfo t = info(name);
    long[] shape = t.shape();
    if (!Arrays.equals(shape, expectedShape)) {
      String rank =
          shape.length == expectedShape.length
              ? ""
              : " (rank " + shape.length + ", expected rank " + expectedShape.length + ")";
      throw new SafeTensorsException(
          t.file()
              + ": tensor '"
              + name
              + "' has shape "
              + Shapes.format(shape)
              + ", expected "
              + Shapes.format(expectedShape)
              + rank);
    }
    long count = t.elementCount();
    if (count > Integer.MAX_VALUE - 8) {
      throw new SafeTensorsException(
          t.file()
              + ": tensor '"
              + name
              + "' has "
              + count
              + " elements, too many for a float[]; use bytes() or matrix()");
    }
    float[] out = new float[(int) count];
    Floats.decode(bytes(name), t.dtype(), out, out.length);
    return out;
  }

  /** Sum of the mapped file sizes, for a load progress bar; still answers after close. */
  public long totalBytes() {
    return totalBytes;
  }

  /** The mapped files, sorted; still answers after close. */
  public List<Path> files() {
    return files;
  }

  /**
   * The files' read-only mappings, whose bytes every tensor view lies in (for registering them
   * with a GPU driver as a DMA source). Valid until {@link #close}.
   */
  public List<MemorySegment> mappings() {
    return files.stream().map(mappings::get).toList();
  }

  /** Unmaps every file; idempotent. Views handed out earlier become inaccessible. */
  @Override
  public void close() {
    synchronized (arena) {
      if (arena.scope().isAlive()) {
        arena.close();
      }
    }
  }

  @Override
  public String toString() {
    return "SafeTensors["
        + source
        + ", "
        + tensors.size()
        + " tensors, "
        + files.size()
        + " files]";
  }

  private void ensureOpen() {
    if (!arena.scope().isAlive()) {
      throw new IllegalStateException(source + " is closed");
    }
  }

  /** Up to three names sharing the longest prefix with {@code name}: likely what was meant. */
  private String similarNames(String name) {
    if (tensors.isEmpty()) {
      return "none";
    }
    List<String> all = new ArrayList<>(tensors.keySet());
    all.sort(Comparator.comparingInt((String n) -> -commonPrefix(n, name)));
    return all.stream().limit(3).collect(Collectors.joining(", "));
  }

  private static int commonPrefix(String a, String b) {
    int n = Math.min(a.length(), b.length());
    int i = 0;
    while (i < n && a.charAt(i) == b.charAt(i)) {
      i++;
    }
    return i;
  }
}

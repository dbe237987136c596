package io.moecluster.expert.cuda;

import static jcuda.driver.JCudaDriver.cuDeviceGet;
import static jcuda.driver.JCudaDriver.cuDeviceGetAttribute;
import static jcuda.driver.JCudaDriver.cuDeviceGetCount;
import static jcuda.driver.JCudaDriver.cuDeviceGetName;
import static jcuda.driver.JCudaDriver.cuDeviceTotalMem;
import static jcuda.driver.JCudaDriver.cuDriverGetVersion;
import static jcuda.driver.JCudaDriver.cuInit;

import java.util.ArrayList;
import java.util.List;
import jcuda.CudaException;
import jcuda.driver.CUdevice;
import jcuda.driver.CUdevice_attribute;
import jcuda.driver.JCudaDriver;

/**
 * Finds the NVIDIA GPUs this JVM can use, once: loads JCuda's driver binding, initializes the
 * driver and lists the devices. Without an NVIDIA driver the first JCuda call throws
 * {@link UnsatisfiedLinkError} (libcuda.so.1 is missing) and every later one
 * {@link NoClassDefFoundError}: both are {@link LinkageError}s, caught here and only here, so the
 * rest of the backend can assume a working driver. The result is kept for the JVM's lifetime.
 */
public final class CudaProbe {
  private CudaProbe() {}

  /** One usable device. */
  public record Device(int ordinal, String name, int computeMajor, int computeMinor, long totalBytes) {
    @Override
    public String toString() {
      return "cuda:" + ordinal + " " + name + " (sm_" + computeMajor + computeMinor + ", "
          + (totalBytes >> 20) + " MiB)";
    }
  }

  /**
   * The probe's answer.
   *
   * @param devices the usable devices, empty when none
   * @param driverVersion the driver's CUDA version (12060 = 12.6), 0 when there is no driver
   * @param problem why there are none (no driver, no device, too old a driver), or null
   */
  public record Result(List<Device> devices, int driverVersion, String problem) {
    public Result {
      devices = List.copyOf(devices);
    }

    public boolean available() {
      return !devices.isEmpty();
    }
  }

  /** The oldest driver this backend supports: CUDA 12.0 (it JIT-compiles PTX ISA 8.0). */
  public static final int MIN_DRIVER_VERSION = 12000;

  private static volatile Result result;

  /** The devices of this machine, probed on the first call. Never throws. */
  public static Result probe() {
    Result r = result;
    if (r == null) {
      synchronized (CudaProbe.class) {
        r = result;
        if (r == null) {
          r = result = probeNow();
        }
      }
    }
    return r;
  }

  private static Result probeNow() {
    try {
      JCudaDriver.setExceptionsEnabled(true);
      cuInit(0);
      int[] version = {0};
      cuDriverGetVersion(version);
      if (version[0] < MIN_DRIVER_VERSION) {
        return new Result(List.of(), version[0], "the NVIDIA driver supports CUDA " + versionText(version[0])
            + "; this backend needs " + versionText(MIN_DRIVER_VERSION) + " or newer");
      }
      int[] count = {0};
      cuDeviceGetCount(count);
      List<Device> devices = new ArrayList<>();
      for (int i = 0; i < count[0]; i++) {
        CUdevice dev = new CUdevice();
        cuDeviceGet(dev, i);
        byte[] name = new byte[256];
        cuDeviceGetName(name, name.length, dev);
        int[] major = {0};
        int[] minor = {0};
        cuDeviceGetAttribute(major, CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev);
        cuDeviceGetAttribute(minor, CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev);
        long[] total = {0};
        cuDeviceTotalMem(total, dev);
        devices.add(new Device(i, cString(name), major[0], minor[0], total[0]));
      }
      return new Result(devices, version[0], devices.isEmpty() ? "the NVIDIA driver reports no CUDA device" : null);
    } catch (LinkageError e) {
      return new Result(List.of(), 0, linkProblem(e));
    } catch (CudaException e) {
      return new Result(List.of(), 0, "the NVIDIA driver failed to initialize: " + e.getMessage());
    }
  }

  /**
   * One line for a failed load of the driver binding. JCuda's message spans many lines (every
   * attempt with its nested stack trace); what the user needs is whether libcuda.so.1 is there.
   */
  static String linkProblem(LinkageError e) {
    String message = String.valueOf(e.getMessage());
    int lib = message.indexOf("libcuda.so");
    if (lib >= 0) {
      int eol = message.indexOf('\n', lib);
      return "no NVIDIA driver (" + message.substring(lib, eol < 0 ? message.length() : eol).trim() + ")";
    }
    int eol = message.indexOf('\n');
    return "the CUDA driver binding (JCuda) could not be loaded: " + e.getClass().getSimpleName() + ": "
        + (eol < 0 ? message : message.substring(0, eol)).trim();
  }

  static String versionText(int version) {
    return version / 1000 + "." + (version % 1000) / 10;
  }

  private static String cString(byte[] bytes) {
    int n = 0;
    while (n < bytes.length && bytes[n] != 0) {
      n++;
    }
    return new String(bytes, 0, n, java.nio.charset.StandardCharsets.US_ASCII);
  }
}

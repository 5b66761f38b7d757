{
  "targets": [
    {
      "target_name": "diskline_native",
      "sources": ["src/addon.c", "src/system.c", "src/tap.c", "src/chunk-codec.c", "src/paths.c"],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "<!@(pkg-config --cflags fuse3)"],
      "defines": ["NAPI_VERSION=8", "FUSE_USE_VERSION=314", "_GNU_SOURCE"],
      "libraries": ["<!@(pkg-config --libs fuse3)", "-lzstd"]
    },
    {
      "target_name": "diskline-tap-helper",
      "type": "executable",
      "sources": ["src/tap-helper.c"],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "<!@(pkg-config --cflags fuse3)"],
      "defines": ["_GNU_SOURCE"],
      "libraries": ["<!@(pkg-config --libs fuse3)", "-lpthread"]
    }
  ]
}

# ripen images, built from Debian 12 packages only.
#
#   docker build --target dispatcher -t ripen-dispatcher .
#   docker build --target worker     -t ripen-worker .
#
# Both runtime images also carry the `ripen` producer CLI
# (e.g. `docker compose exec worker ripen enqueue ...`).

# ---- build ------------------------------------------------------------------
FROM debian:12 AS build
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential cmake ninja-build pkg-config git ca-certificates \
      librabbitmq-dev libhiredis-dev nlohmann-json3-dev libspdlog-dev libcurl4-openssl-dev \
      libcli11-dev libtomlplusplus-dev libgtest-dev libgmock-dev libhowardhinnant-date-dev tzdata \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# Only the sources: keeps local build/, build-asan/ and .run/ out of the image.
COPY CMakeLists.txt ./
COPY cmake/ cmake/
COPY shared/ shared/
COPY producer/ producer/
COPY dispatcher/ dispatcher/
COPY worker/ worker/
COPY tests/ tests/
COPY bench/ bench/

RUN cmake -S /src -B /build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRIPEN_BUILD_TESTS=OFF \
 && cmake --build /build -j"$(nproc)" --target ripen-dispatcher ripen-worker ripen \
 && install -d /out \
 && install -m 0755 /build/dispatcher/ripen-dispatcher /build/worker/ripen-worker \
      /build/producer/ripen /out/

# ---- runtime (shared by both images) -----------------------------------------
FROM debian:12-slim AS runtime
ARG DEBIAN_FRONTEND=noninteractive
# The shared libraries behind the -dev packages above.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      ca-certificates librabbitmq4 libhiredis0.14 libspdlog1.10 libfmt9 \
      libtomlplusplus3 libcurl4 libstdc++6 libdate-tz3 tzdata \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin ripen
COPY --from=build /out/ /usr/local/bin/
USER ripen
ENV RIPEN_REDIS_URL=redis://redis:6379/0 \
    RIPEN_AMQP_URL=amqp://guest:guest@rabbitmq:5672/%2f

# ---- images -------------------------------------------------------------------
FROM runtime AS dispatcher
ENTRYPOINT ["ripen-dispatcher"]

FROM runtime AS worker
ENTRYPOINT ["ripen-worker"]
CMD ["--queue", "default"]

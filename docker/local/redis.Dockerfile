# bookworm's redis-server (7.0) for docker/compose.local.yaml, where redis:7.4-alpine cannot be
# pulled. The compose file gives the command line (AOF, password); /data holds the AOF.
FROM local/bookworm:12
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get install -y --no-install-recommends redis-server=5:7.0.15-1~deb12u* \
    && rm -rf /var/lib/apt/lists/* \
    && install -d -o redis -g redis /data
WORKDIR /data
USER redis
CMD ["redis-server", "--dir", "/data"]

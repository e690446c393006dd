# Python 3.11 from bookworm's own packages, on the debootstrapped base (build-bases.sh): the
# stand-in for python:3.11.x-slim-bookworm where no registry can be reached. Our Dockerfiles
# take it as `--build-arg PYTHON_IMAGE=local/python:3.11-bookworm`; like the upstream image it
# has `python` on PATH, venv, pip (inside a venv) and CA certificates.
#
# ca/ holds the building machine's own extra CAs (/usr/local/share/ca-certificates, e.g. a
# TLS-inspecting proxy's), so pip inside the builds trusts what the host trusts. pip and
# requests are pointed at the system bundle, since they read certifi's by default. This image
# is for the machine that built it: do not push it.
FROM local/bookworm:12
ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8
COPY ca/ /usr/local/share/ca-certificates/
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        python3.11=3.11.2-6+deb12u* python3.11-venv=3.11.2-6+deb12u* python3-venv=3.11.2-1+b1 \
        ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && update-ca-certificates \
    && ln -s /usr/bin/python3.11 /usr/local/bin/python \
    && ln -s /usr/bin/python3.11 /usr/local/bin/python3
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
CMD ["python"]

#!/usr/bin/env python3
"""Writes the seed corpus kept in fuzz/corpus/TARGET: a few small, valid inputs per target
(media made here with ffmpeg's lavfi sources, protocol bytes captured from ffmpeg itself,
documents written out), so that fuzzing starts past the first checks of each parser.
Each seed is at most a few kilobytes. Run from anywhere: python3 fuzz/make_seeds.py"""

import json
import os
import socket
import struct
import subprocess
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
LIMIT = 8192


def seed(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data[:LIMIT])


def ffmpeg(*args):
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", *args], check=True)


def flv_tags(path):
    """(type, body) of each tag of an FLV file."""
    data = open(path, "rb").read()
    pos = struct.unpack(">I", data[5:9])[0] + 4
    while pos + 11 <= len(data):
        kind, size = data[pos], int.from_bytes(data[pos + 1:pos + 4], "big")
        yield kind, data[pos + 11:pos + 11 + size]
        pos += 11 + size + 4


def rtmp_capture(tmp, clip):
    """What ffmpeg sends an RTMP server that completes the handshake and then says
    nothing: C0 C1 C2 and its first commands."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    got = bytearray()

    def serve():
        c, _ = srv.accept()
        c.settimeout(1.5)
        try:
            while len(got) < 1537:
                got.extend(c.recv(65536))
            c.sendall(b"\x03" + bytes(1536) + bytes(got[1:1537]))
            while True:
                chunk = c.recv(65536)
                if not chunk:
                    break
                got.extend(chunk)
        except OSError:
            pass
        c.close()

    t = threading.Thread(target=serve)
    t.start()
    p = subprocess.Popen(["ffmpeg", "-loglevel", "quiet", "-re", "-i", clip, "-c", "copy", "-f", "flv",
                          "rtmp://127.0.0.1:%d/live/seedkey" % port])
    t.join()
    p.kill()
    p.wait()
    return bytes(got)


def mp4_box(path, fourcc):
    """The body of the first box named `fourcc` anywhere in an MP4 file (a plain search)."""
    data = open(path, "rb").read()
    at = data.index(fourcc.encode())
    size = int.from_bytes(data[at - 4:at], "big")
    return data[at + 4:at - 4 + size]


def enhanced_seeds(tmp):
    """HEVC and AV1 configuration records, Enhanced RTMP sequence starts and frames, and a
    connect `_result` announcing Enhanced RTMP."""
    src = ["-f", "lavfi", "-i", "testsrc2=size=64x64:rate=10", "-t", "0.3", "-pix_fmt", "yuv420p"]
    hevc = os.path.join(tmp, "hevc.mp4")
    ffmpeg(*src, "-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "info=0:log-level=error",
           "-tag:v", "hvc1", hevc)
    av1 = os.path.join(tmp, "av1.mp4")
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", *src, "-c:v", "libsvtav1", "-preset", "12", av1],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for name, path, box, fourcc in [("hvcc", hevc, "hvcC", b"hvc1"), ("av1c", av1, "av1C", b"av01")]:
        record = mp4_box(path, box)
        seed("codec_config", name, record)
        seed("flv_tags", "ex-%s-start" % fourcc.decode(), bytes([0x90]) + fourcc + record)
    seed("flv_tags", "ex-hvc1-frame", bytes([0xA1]) + b"hvc1" + b"\x00\x00\x21" + b"\x00\x00\x00\x03\x02\x01\xd0")
    seed("flv_tags", "ex-av01-frame", bytes([0xA3]) + b"av01" + b"\x32\x02\x10\x00")
    # AMF0: "_result", 1, {fmsVer, fourCcList: [hvc1, av01]}, {code}
    def string(s):
        return struct.pack(">H", len(s)) + s.encode()
    props = (b"\x03" + string("fmsVer") + b"\x02" + string("FMS/3,0,1,123")
             + string("fourCcList") + b"\x0a" + struct.pack(">I", 2)
             + b"\x02" + string("hvc1") + b"\x02" + string("av01") + b"\x00\x00\x09")
    info = b"\x03" + string("code") + b"\x02" + string("NetConnection.Connect.Success") + b"\x00\x00\x09"
    seed("flv_tags", "connect-result", b"\x02" + string("_result") + b"\x00" + struct.pack(">d", 1.0) + props + info)


def main():
    with tempfile.TemporaryDirectory() as tmp:
        clip = os.path.join(tmp, "clip.mp4")
        ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x64:rate=10", "-f", "lavfi", "-i",
               "sine=frequency=440:sample_rate=48000", "-t", "0.5", "-c:v", "libx264", "-preset", "ultrafast",
               "-g", "3", "-bf", "1", "-c:a", "aac", "-b:a", "32k", clip)
        flv = os.path.join(tmp, "clip.flv")
        ffmpeg("-i", clip, "-c", "copy", "-f", "flv", flv)
        for i, (kind, body) in enumerate(flv_tags(flv)):
            if kind == 9 and i < 8:
                seed("flv_tags", "video-%d" % i, body)
                if body[:2] == b"\x17\x00":
                    seed("codec_config", "avcc", body[5:])
            if kind == 8 and body[:2] == b"\xaf\x00":
                seed("codec_config", "asc", body[2:])
        enhanced_seeds(tmp)
        h264 = os.path.join(tmp, "clip.h264")
        ffmpeg("-i", clip, "-c:v", "copy", "-bsf:v", "h264_mp4toannexb", "-an", "-f", "h264", h264)
        seed("annexb", "testsrc", open(h264, "rb").read())
        adts = os.path.join(tmp, "clip.aac")
        ffmpeg("-i", clip, "-c:a", "copy", "-vn", "-f", "adts", adts)
        seed("annexb", "adts", open(adts, "rb").read()[:512])
        ts = os.path.join(tmp, "clip.ts")
        ffmpeg("-i", clip, "-c", "copy", "-f", "mpegts", ts)
        seed("hls_segment", "clip.ts", open(ts, "rb").read()[: 188 * 40])
        seed("srt_input", "publish", b"#!::r=live/key,m=publish\n" + open(ts, "rb").read()[: 188 * 60])
        seed("srt_input", "destination", b"srt://127.0.0.1:9000?streamid=x&passphrase=0123456789&latency=200\n")
        frag = os.path.join(tmp, "clip-frag.mp4")
        ffmpeg("-i", clip, "-c", "copy", "-movflags", "frag_keyframe+empty_moov+default_base_moof", frag)
        seed("hls_segment", "clip-frag.mp4", open(frag, "rb").read())

        wire = rtmp_capture(tmp, clip)
        # the target's first byte: 0x40 = with the handshake, fed 512 bytes at a time
        seed("rtmp_ingest", "ffmpeg-publish", b"\x40" + wire)
        seed("rtmp_chunk_reader", "ffmpeg-commands", b"\x80" + wire[3073:])

    seed("rtmp_url", "youtube", "rtmp://a.rtmp.youtube.com/live2/abcd-efgh-ijkl-mnop")
    seed("rtmp_url", "rtmps-query", "rtmps://live-api-s.example.com:443/rtmp/FB-1-0-Ab?s_bl=1&a=Xy")
    seed("rtmp_url", "bare", "rtmp://127.0.0.1/live")
    for spec in ["1080p,720p,480p", "1280x720@30:3000k,426x240", "720p60:4500k"]:
        seed("ladder_spec", spec.replace(",", "_").replace(":", "-").replace("@", "at"), spec + "\x00\x07\x80\x04\x38\x1e")
    seed("hls_playlist", "media.m3u8",
         "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:7\n"
         "#EXT-X-KEY:METHOD=AES-128,URI=\"key.bin\",IV=0x000102030405060708090a0b0c0d0e0f\n"
         "#EXTINF:2.0,\ns7.ts\n#EXT-X-DISCONTINUITY\n#EXT-X-BYTERANGE:1000@0\n#EXTINF:2.0,\ns8.ts\n#EXT-X-ENDLIST\n")
    seed("hls_playlist", "master.m3u8",
         "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=3000000,RESOLUTION=1280x720,CODECS=\"avc1.64001f,mp4a.40.2\"\n"
         "720p/index.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360\n360p/index.m3u8\n"
         "#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=100000,URI=\"iframes.m3u8\"\n")
    sdp = ("v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=seed\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
           "m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
           "a=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z2QACqzZRifmwFqAgICgAAADACAAAAMB4eJEsA==,aOvjyyLA\r\n"
           "a=control:streamid=0\r\nm=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/48000/2\r\n"
           "a=fmtp:97 profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3; config=1190\r\n"
           "a=control:streamid=1\r\n")
    seed("rtsp_sdp", "announce",
         "ANNOUNCE rtsp://127.0.0.1:8554/live/key RTSP/1.0\r\nCSeq: 2\r\nContent-Type: application/sdp\r\n"
         "Content-Length: %d\r\n\r\n%s" % (len(sdp), sdp))
    seed("rtsp_sdp", "setup",
         "SETUP rtsp://127.0.0.1:8554/live/key/streamid=0 RTSP/1.0\r\nCSeq: 3\r\n"
         "Transport: RTP/AVP/TCP;unicast;interleaved=0-1;mode=record\r\n\r\n")
    # RTP: an FU-A start and end, a STAP-A, an AAC-hbr packet (raw; the target reads a list)
    rtp = lambda pt, seq, ts, payload: bytes([0x80, pt, seq >> 8, seq & 255]) + struct.pack(">II", ts, 1) + payload
    packets = [rtp(96, 1, 3000, b"\x7c\x85" + bytes(40)), rtp(96 | 0x80, 2, 3000, b"\x7c\x45" + bytes(20)),
               rtp(96, 3, 6000, b"\x18\x00\x04\x67\x64\x00\x0a\x00\x02\x68\xeb"),
               rtp(97, 4, 1024, b"\x00\x10\x00\x40" + bytes(8))]
    seed("rtp_depacketize", "packets", b"".join(struct.pack("<I", len(p)) + p for p in packets))
    ok = struct.pack(">H", 200)
    seed("platform_answers", "broadcast", ok + json.dumps({"kind": "youtube#liveBroadcast", "id": "b1", "snippet": {
        "title": "t", "scheduledStartTime": "2026-12-02T10:00:00Z", "liveChatId": "c1"}, "status": {
        "lifeCycleStatus": "ready", "privacyStatus": "unlisted"}, "contentDetails": {"boundStreamId": "s1"}}).encode())
    seed("platform_answers", "stream", ok + json.dumps({"items": [{"id": "s1", "cdn": {"ingestionInfo": {
        "streamName": "k", "ingestionAddress": "rtmp://a.rtmp.youtube.com/live2"}}, "status": {
        "streamStatus": "active", "healthStatus": {"status": "good"}}}]}).encode())
    seed("platform_answers", "error", struct.pack(">H", 403) + json.dumps({"error": {"code": 403, "message": "m",
        "errors": [{"reason": "quotaExceeded", "domain": "youtube.quota"}]}}).encode())
    seed("platform_answers", "token", ok + b'{"access_token":"a","expires_in":3599,"refresh_token":"r"}')
    seed("platform_answers", "mtslink", ok + b'{"eventId":12,"eventSessionId":34,"link":"https://my.mts-link.ru/j/1/2"}')
    seed("capture_input", "chat-line", json.dumps({"t_ms": 1200, "author": "A", "text": "hello <b>x</b>", "id": "m1"}))
    seed("capture_input", "binding", json.dumps({"kind": "chat", "items": [{"author": "A", "text": "hi"}]}))
    seed("capture_input", "manifest", json.dumps({"version": 1, "started_at": "2026-12-02T10:00:00Z",
        "url": "https://example.com/room?token=secret", "gaps": [{"from_ms": 1, "to_ms": 2}]}))

    # a browser's WHIP offer (sendonly Opus and H.264 among VP8, RTX; ICE candidates included)
    seed("whip_offer", "browser", "v=0\r\no=- 46117 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
         "a=group:BUNDLE 0 1\r\na=extmap-allow-mixed\r\na=msid-semantic: WMS s\r\n"
         "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\n"
         "a=candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host generation 0\r\n"
         "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdefghijklmn\r\na=ice-options:trickle\r\n"
         "a=fingerprint:sha-256 " + ":".join(["AB"] * 32) + "\r\na=setup:actpass\r\na=mid:0\r\n"
         "a=sendonly\r\na=msid:s a\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n"
         "a=fmtp:111 minptime=10;useinbandfec=1\r\na=ssrc:1001 cname:c\r\n"
         "m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\n"
         "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdefghijklmn\r\n"
         "a=fingerprint:sha-256 " + ":".join(["AB"] * 32) + "\r\na=setup:actpass\r\na=mid:1\r\n"
         "a=sendonly\r\na=msid:s v\r\na=rtcp-mux\r\na=rtcp-rsize\r\na=rtpmap:96 VP8/90000\r\n"
         "a=rtcp-fb:96 nack pli\r\na=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n"
         "a=rtpmap:102 H264/90000\r\na=rtcp-fb:102 nack pli\r\n"
         "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n"
         "a=rtpmap:103 rtx/90000\r\na=fmtp:103 apt=102\r\na=ssrc-group:FID 2001 2002\r\n"
         "a=ssrc:2001 cname:c\r\na=ssrc:2002 cname:c\r\n")


if __name__ == "__main__":
    main()

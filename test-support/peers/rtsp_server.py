#!/usr/bin/python3
"""A real RTSP server for the pull tests: GStreamer's gst-rtsp-server serving a live
H.264 (or, with the argument h265, HEVC) + AAC (mpeg4-generic) test stream at
rtsp://127.0.0.1:PORT/cam."""
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

Gst.init(None)
port = sys.argv[1]
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(port)
factory = GstRtspServer.RTSPMediaFactory()
# argv[2] "h265": HEVC (x265) instead of H.264, as many IP cameras send
if len(sys.argv) > 2 and sys.argv[2] == "h265":
    video = ("x265enc tune=zerolatency speed-preset=ultrafast key-int-max=30 ! video/x-h265,profile=main "
             "! rtph265pay name=pay0 pt=96 config-interval=1")
else:
    video = "x264enc tune=zerolatency key-int-max=30 ! rtph264pay name=pay0 pt=96 config-interval=1"
factory.set_launch(
    "( videotestsrc is-live=true ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 "
    "! " + video + " "
    "audiotestsrc is-live=true ! audio/x-raw,rate=48000,channels=2 ! avenc_aac ! rtpmp4gpay name=pay1 pt=97 )"
)
factory.set_shared(True)
server.get_mount_points().add_factory("/cam", factory)
server.attach(None)
print("ready", flush=True)
GLib.MainLoop().run()

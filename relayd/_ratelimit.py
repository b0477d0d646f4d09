from service import SlidingWindow as SlidingWindow  # until relayd/_install.py imports service

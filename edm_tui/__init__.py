"""edm-sync: keeps Magento 2 newsletter subscribers and an Interspire Email Marketer list in step."""

__version__ = "0.1.0"
